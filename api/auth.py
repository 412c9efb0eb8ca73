"""The admin bearer token of the client-management routes."""

from __future__ import annotations

import hmac

from sanic import Request

from api.errors import ManagementDisabled, Unauthenticated
from api.settings import Settings

__all__ = ["require_admin"]


def require_admin(request: Request, settings: Settings) -> None:
    """Passes only ``Authorization: Bearer <RATELIMIT_ADMIN_TOKEN>``.

    403 while no token is configured (management disabled), 401 for a missing or wrong
    token. The comparison takes the same time wherever the first difference is.
    """
    if not settings.admin_token:
        raise ManagementDisabled("client management is disabled: RATELIMIT_ADMIN_TOKEN is not set")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if not header:
        raise Unauthenticated("missing Authorization: Bearer <admin token>")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("expected Authorization: Bearer <admin token>")
    given = token.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, settings.admin_token.encode("utf-8")):
        raise Unauthenticated("invalid admin token")
