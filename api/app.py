"""The Sanic application factory.

``create_app`` builds the routes and listeners and touches no network: each worker
connects in its ``before_server_start`` listener (one Hazelcast client per worker), drains
in ``before_server_stop`` and closes its strategy and client in ``after_server_stop``.

Routes (every error body is ``{"error": "..."}``):

- ``GET /example``: the guarded route (``X-Api-Id``): 200, 401, 404, 429, 503
- ``GET /decide``: the decision alone, for a gateway: 204, 401, 403
- ``POST /bucket``: create a client: 201, 400, 401, 403, 409, 413, 422, 503
- ``GET /bucket?name=``: the client holding a name: 200, 401, 403, 404, 422, 503
- ``GET /bucket/{id}``: a client and its current usage: 200, 401, 403, 404, 503
- ``PATCH /bucket/{id}``: change limit, window and/or alignment: 200, 400, 401, 403, 404,
  409, 413, 422, 503
- ``DELETE /bucket/{id}``: delete a client: 204, 401, 403, 404, 503
- ``GET /health``: liveness, always 200
- ``GET /ready``: 200, or 503 while not connected to the cluster or draining
- ``GET /metrics``: Prometheus text format
- ``GET /docs/openapi.json``: the OpenAPI document of all of the above, itself included

Any other path is 404, any other method on a known path 405.

With ``RATELIMIT_GRPC_PORT`` set (not 0), each worker also serves Envoy's gRPC rate limit
service on that port (:mod:`rls.server`), on the same connection and strategy.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sanic import Request, Sanic
from sanic.config import Config
from sanic.response import BaseHTTPResponse, HTTPResponse
from sanic_ext.config import PRIORITY as EXTENSIONS_PRIORITY
from sanic_ext.extensions.openapi.builders import SpecificationBuilder
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from api import clients, guard, probes
from api.backend import Backend
from api.errors import render_error
from api.metrics import HTTP_REQUESTS, TALLY, labelled, method_label, preset
from api.settings import Settings
from compat import name_openapi_operation

__all__ = ["API_VERSION", "App", "create_app"]

#: The application type: Sanic's default config and context.
App = Sanic[Config, SimpleNamespace]
API_VERSION = "1.0.0"
UNMATCHED_ROUTE = "unmatched"


def create_app(settings: Settings | None = None, *, name: str = "ratelimit") -> App:
    """A new application for ``settings`` (default: read from the environment)."""
    settings = settings or Settings.from_env()
    app: App = Sanic(name)
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    app.config.ACCESS_LOG = False
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.ctx.backend = Backend(settings)
    app.ctx.rls = None
    if settings.grpc_port:
        # Imported here: the rls package builds on api's headers and backend, so api
        # must not import it while being imported.
        from rls.server import RlsServer

        app.ctx.rls = RlsServer(settings, app.ctx.backend)
    _extend(app)

    app.add_route(guard.example, "/example", methods=["GET"], name="example")
    app.add_route(guard.gateway_decision, "/decide", methods=["GET"], name="gateway_decision")
    # The original calls a client a "bucket"; its paths keep the name.
    app.add_route(clients.create_client, "/bucket", methods=["POST"], name="create_client")
    app.add_route(clients.find_client, "/bucket", methods=["GET"], name="find_client")
    path = "/bucket/<client_id:str>"
    app.add_route(clients.read_client, path, methods=["GET"], name="read_client")
    app.add_route(clients.update_client, path, methods=["PATCH"], name="update_client")
    app.add_route(clients.delete_client, path, methods=["DELETE"], name="delete_client")
    app.add_route(probes.health, "/health", methods=["GET"], name="health")
    app.add_route(probes.ready, "/ready", methods=["GET"], name="ready")
    app.add_route(probes.metrics, "/metrics", methods=["GET"], name="metrics")

    app.error_handler.add(Exception, render_error)
    app.middleware(_count_response, "response")
    app.before_server_start(_start_backend)
    # After Sanic Extensions has built the document (its listener has priority -1000).
    app.before_server_start(_document_the_document, priority=EXTENSIONS_PRIORITY - 1)
    app.before_server_stop(_drain)
    app.after_server_stop(_stop_backend)
    return app


def _extend(app: App) -> None:
    """Sanic Extensions for the OpenAPI document only: no CORS, no automatic HEAD,
    OPTIONS or TRACE routes, and no UI pages (they load scripts from CDNs). Nor its
    dependency injection, which would run a signal handler on every request."""
    app.extend(
        extensions=[OpenAPIExtension],
        built_in_extensions=False,
        config={
            "cors": False,
            "http_all_methods": False,
            "http_auto_head": False,
            "http_auto_options": False,
            "http_auto_trace": False,
            "oas_ui_redoc": False,
            "oas_ui_swagger": False,
            "oas_ui_default": None,
        },
    )
    openapi = app.ext.openapi
    openapi.describe(
        "Distributed rate limit",
        version=API_VERSION,
        description=(
            "Per-client fixed-window rate limiting on a Hazelcast cluster. "
            "Management routes need `Authorization: Bearer <RATELIMIT_ADMIN_TOKEN>`."
        ),
    )
    openapi.add_security_scheme("admin", "http", scheme="bearer")


def _document_the_document(app: App) -> None:
    """Adds the document's own route, which Sanic Extensions leaves out, to the document."""
    operation = name_openapi_operation(probes.openapi_document, "get~openapi_document", app)
    path = app.config.OAS_URL_PREFIX.rstrip("/") + app.config.OAS_URI_TO_JSON
    SpecificationBuilder().operation(path, "GET", operation)


async def _count_response(request: Request, response: BaseHTTPResponse) -> HTTPResponse | None:
    route = f"/{request.route.path}" if request.route is not None else UNMATCHED_ROUTE
    TALLY.inc(labelled(HTTP_REQUESTS, route, method_label(request.method), str(response.status)))
    return None


async def _start_backend(app: App) -> None:
    preset(app.ctx.backend.settings.strategy)
    app.ctx.backend.start()
    if app.ctx.rls is not None:
        await app.ctx.rls.start()


async def _drain(app: App) -> None:
    """Keeps serving, with /ready at 503 (and gRPC health NOT_SERVING), so the balancers
    stop sending first."""
    backend: Backend = app.ctx.backend
    backend.draining = True
    if app.ctx.rls is not None:
        await app.ctx.rls.drain()
    await asyncio.sleep(backend.settings.drain_seconds)


async def _stop_backend(app: App) -> None:
    if app.ctx.rls is not None:
        await app.ctx.rls.stop()
    await app.ctx.backend.close()
    TALLY.flush()
