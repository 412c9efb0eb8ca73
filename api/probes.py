"""``/health`` (liveness), ``/ready`` (readiness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext.extensions.openapi import openapi

from api.backend import backend_of, workers_connected
from api.docs import Error, Status
from api.metrics import exposition

__all__ = ["health", "metrics", "openapi_document", "ready"]


@openapi.summary("Liveness: the process answers; says nothing about the cluster")
@openapi.tag("operations")
@openapi.response(200, {"application/json": Status}, "alive")
async def health(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@openapi.summary("Readiness: connected to the cluster and not draining")
@openapi.tag("operations")
@openapi.response(200, {"application/json": Status}, "ready")
@openapi.response(503, {"application/json": Error}, "not connected, or draining after SIGTERM")
async def ready(request: Request) -> HTTPResponse:
    backend = backend_of(request)
    if backend.draining:
        return json({"error": "draining: the replica is stopping"}, status=503)
    if not backend.connected:
        return json({"error": "not connected to the cluster"}, status=503)
    if not workers_connected(backend.settings.workers):
        return json({"error": "not every worker is connected to the cluster yet"}, status=503)
    return json({"status": "ready"})


@openapi.summary("Prometheus metrics of this replica (every worker)")
@openapi.tag("operations")
@openapi.response(200, {"text/plain": str}, "Prometheus text format")
async def metrics(request: Request) -> HTTPResponse:
    body, content_type = exposition()
    return raw(body, content_type=content_type)


@openapi.summary("This OpenAPI document (served by Sanic Extensions)")
@openapi.tag("operations")
@openapi.response(200, {"application/json": dict}, "OpenAPI 3 document")
def openapi_document() -> None:
    """Holds the description of ``GET /docs/openapi.json`` (see api.app)."""
