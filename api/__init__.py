"""The HTTP service: Sanic replicas in front of the limiter.

``create_app(settings)`` builds one application; ``python -m api`` runs one replica with
``RATELIMIT_WORKERS`` worker processes on ``RATELIMIT_HOST:RATELIMIT_PORT``.
"""

from __future__ import annotations

from api.app import create_app

__all__ = ["create_app"]
