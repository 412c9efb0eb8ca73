"""Envoy rate limit service front door: envoyproxy/ratelimit's configuration, loaded,
checked (:mod:`rls.config`, :mod:`rls.limits`, ``python -m rls.config check DIR``),
matched (:mod:`rls.matching`), each rule resolved to a :class:`limiter.Policy`, and
reloaded on change (:mod:`rls.reload`); the ``ShouldRateLimit`` decisions
(:mod:`rls.service`), their metrics (:mod:`rls.metrics`) and the gRPC server each replica
worker runs (:mod:`rls.server`).

Nothing is imported here: ``python -m rls.config`` runs that module as ``__main__``, and
importing it from the package first would load it twice.
"""

from __future__ import annotations

__all__ = [
    "check",
    "config",
    "errors",
    "limits",
    "matching",
    "metrics",
    "reload",
    "server",
    "service",
    "source",
]
