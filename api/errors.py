"""HTTP errors of the API, and the one handler that renders every error as JSON.

::

    ApiError                 an expected failure with its status and a message
    ├── MalformedBody        400  the body is not JSON
    ├── InvalidHeader        400  a header of a guarded request is malformed or out of range
    ├── InvalidField         422  a field is missing, of the wrong type or out of range
    ├── MissingApiId         401  GET /example without X-Api-Id
    ├── Unauthenticated      401  a management route without the admin bearer token
    ├── ManagementDisabled   403  RATELIMIT_ADMIN_TOKEN is empty
    ├── UnknownClient        404  no client has that id
    ├── NameTaken            409  another client already has that name
    ├── UpdateConflict       409  a PATCH kept losing to concurrent changes of the client
    ├── ClusterUnavailable   503  the cluster gave no answer in time (a limiter BackendError)
    └── RegistryUnavailable  503  the registry's database refused a write; nothing changed

The registry raises its own errors (:mod:`registry.errors`), which know nothing of HTTP;
:func:`render_error` maps them to the three above (:func:`from_registry`): ``NameTaken``
and ``UpdateConflict`` to theirs, ``StoreUnavailable`` to ``RegistryUnavailable`` with its
``Retry-After``.

Every response of status 400 or above is ``{"error": "..."}`` (422 adds ``"field"``),
Sanic's own errors (404 no route, 405 wrong method, 413 body too large) included; an
exception nobody expected is logged and answered with a JSON 500 that leaks nothing.
"""

from __future__ import annotations

from typing import Any

from sanic import Request
from sanic.exceptions import MethodNotAllowed, NotFound, PayloadTooLarge, SanicException
from sanic.log import error_logger
from sanic.response import HTTPResponse, json

import registry

__all__ = [
    "ApiError",
    "ClusterUnavailable",
    "InvalidField",
    "InvalidHeader",
    "MalformedBody",
    "ManagementDisabled",
    "MissingApiId",
    "NameTaken",
    "RegistryUnavailable",
    "Unauthenticated",
    "UnknownClient",
    "UpdateConflict",
    "error_body",
    "from_registry",
    "render_error",
]


class ApiError(SanicException):
    """An expected failure: ``status_code`` and a message safe to show the caller."""

    status_code = 500
    quiet = True

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, status_code=self.status_code, headers=headers)
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.message)


class MalformedBody(ApiError):
    status_code = 400


class InvalidHeader(ApiError):
    """A request header is malformed or out of range; the message starts with its name,
    and ``X-RateLimit-Invalid`` names it too (a gateway that sees only the headers of the
    decision, as nginx's ``auth_request`` does, can still answer 400)."""

    status_code = 400

    def __init__(self, header: str, problem: str) -> None:
        super().__init__(f"{header}: {problem}", headers={INVALID_HEADER: header})
        self.header = header


#: The response header that names the request header a 400 refused.
INVALID_HEADER = "X-RateLimit-Invalid"


class InvalidField(ApiError):
    """A field failed validation; ``field`` names it (``body`` for the body as a whole)."""

    status_code = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field

    def body(self) -> dict[str, Any]:
        return {**error_body(self.message), "field": self.field}


class MissingApiId(ApiError):
    status_code = 401


class Unauthenticated(ApiError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="ratelimit"'})


class ManagementDisabled(ApiError):
    status_code = 403


class UnknownClient(ApiError):
    status_code = 404


class NameTaken(ApiError):
    status_code = 409


class UpdateConflict(ApiError):
    """The record changed under every attempt of an update: a conflict, not an outage."""

    status_code = 409


class ClusterUnavailable(ApiError):
    status_code = 503

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


class RegistryUnavailable(ApiError):
    """The members could not write a registry change to PostgreSQL (write-through), so
    they made none: the client is as it was, and the same request may be sent again."""

    status_code = 503

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "registry database unavailable: nothing was changed, try again later",
            headers={"Retry-After": str(retry_after_seconds)},
        )


def error_body(message: str) -> dict[str, Any]:
    return {"error": message}


def from_registry(error: registry.RegistryError) -> ApiError | None:
    """The HTTP answer to a registry error: the one place where they get a status (None
    for one this service has no answer for: a bug, rendered as a logged 500)."""
    if isinstance(error, registry.StoreUnavailable):
        return RegistryUnavailable(error.retry_after_seconds)
    if isinstance(error, registry.NameTaken):
        return NameTaken(str(error))
    if isinstance(error, registry.UpdateConflict):
        return UpdateConflict(str(error))
    return None


def render_error(request: Request, exception: Exception) -> HTTPResponse:
    """The app's only error handler: every exception becomes a JSON response."""
    if isinstance(exception, registry.RegistryError):
        exception = from_registry(exception) or exception
    if isinstance(exception, ApiError):
        return json(exception.body(), status=exception.status_code, headers=exception.headers)
    if isinstance(exception, SanicException) and exception.status_code < 500:
        headers = dict(exception.headers or {})
        if isinstance(exception, MethodNotAllowed) and "Allow" not in headers:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return json(
            error_body(_sanic_message(request, exception)),
            status=exception.status_code,
            headers=headers,
        )
    error_logger.exception(
        "unexpected error answering %s %s", request.method, request.path, exc_info=exception
    )
    status = exception.status_code if isinstance(exception, SanicException) else 500
    return json(error_body("internal error"), status=status)


#: Methods a route of this service may serve, for the Allow header of a 405.
KNOWN_METHODS = ("GET", "POST", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """The methods the request's path serves: RFC 9110 requires them on every 405, and
    Sanic names none for a method it does not know (``QUERY``, say)."""
    allowed = []
    for method in KNOWN_METHODS:
        try:
            request.app.router.get(request.path, method, None)
        except SanicException:
            continue
        allowed.append(method)
    return allowed


def _sanic_message(request: Request, exception: SanicException) -> str:
    """Short messages for Sanic's own errors, without echoing the raw request."""
    if isinstance(exception, NotFound):
        return "not found"
    if isinstance(exception, MethodNotAllowed):
        return f"method {request.method} not allowed here"
    if isinstance(exception, PayloadTooLarge):
        if "header" in str(exception).lower():
            return "request headers too large"
        limit = request.app.config.REQUEST_MAX_SIZE
        return f"request body too large: at most {limit} bytes"
    return str(exception) or "bad request"
