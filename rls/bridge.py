"""Envoy's rate limit service over plain HTTP/1.1, for a gRPC-to-HTTP/1.1 bridge.

Why a second way in: a replica's gRPC server (grpcio) spends about four times the CPU of a
Sanic route on each call, nearly all of it in the gRPC server itself, and under load that
is what keeps an answer from reaching Envoy within its 20 ms. Envoy's
``grpc_http1_reverse_bridge`` filter turns its own gRPC call into an HTTP/1.1 ``POST`` on
the same path, the protobuf message as the body (its gRPC frame withheld), and the answer
back into a gRPC one. The stack's Envoy does that on a listener of its own
(``envoyproxy/envoy.yaml``); anything else that speaks gRPC uses the gRPC port.

Routes, on every replica whose rate limit service is on (``RATELIMIT_GRPC_PORT`` not 0),
each answering the same decisions as the gRPC method of its path:

- ``POST /envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``: a
  ``RateLimitRequest``, ``application/x-protobuf``; 200 with the ``RateLimitResponse``;
  400 for a body that is not one, or a request no answer fits (gRPC's INVALID_ARGUMENT);
  503 when the service cannot decide (UNAVAILABLE: no valid configuration, the cluster
  unreachable).
- ``POST /grpc.health.v1.Health/Check``: 200 with a ``HealthCheckResponse`` (SERVING)
  while the worker serves, 503 otherwise, so a gRPC health check through the bridge
  fails as it does on the gRPC port.

Envoy's bridge makes the status the gRPC status (200: OK; 503: UNAVAILABLE; 400:
INTERNAL, as Envoy maps HTTP to gRPC) and hands a gRPC error to the rate limit filter's
failure mode whatever its code. The reason is in the answer's ``grpc-message`` header,
for whoever reads the HTTP answer; Envoy's bridge does not pass it on. The call's deadline
is the ``grpc-timeout`` header Envoy's call carries, which the bridge passes on.
"""

from __future__ import annotations

import re

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from sanic import Request
from sanic.response import HTTPResponse, raw
from sanic_ext.extensions.openapi import openapi

from rls.server import SERVICE_NAME, RlsServer

__all__ = [
    "CONTENT_TYPE",
    "HEALTH_PATH",
    "SHOULD_RATE_LIMIT_PATH",
    "grpc_timeout_seconds",
    "health_check",
    "should_rate_limit",
]

#: What the bridge is configured to send and expects back (its ``content_type``).
CONTENT_TYPE = "application/x-protobuf"
SHOULD_RATE_LIMIT_PATH = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
HEALTH_PATH = "/grpc.health.v1.Health/Check"

#: gRPC's ``grpc-timeout``: at most 8 digits and a unit (PROTOCOL-HTTP2.md).
_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
#: The answer of a gRPC status that is not OK, by the HTTP status the bridge maps back.
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "UNAVAILABLE": 503}
_SERVING = health_pb2.HealthCheckResponse(
    status=health_pb2.HealthCheckResponse.SERVING
).SerializeToString()


def grpc_timeout_seconds(value: str | None) -> float | None:
    """The deadline a ``grpc-timeout`` header gives, in seconds; None when absent or
    malformed (the service's own decision timeout then bounds the call)."""
    if not value:
        return None
    found = _TIMEOUT.fullmatch(value.strip())
    if found is None:
        return None
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def _rls(request: Request) -> RlsServer:
    server: RlsServer = request.app.ctx.rls
    return server


def _error(status: int, message: str) -> HTTPResponse:
    # The bridge checks the content type of every answer, errors included: another one
    # would turn the status into UNKNOWN.
    return raw(b"", status=status, content_type=CONTENT_TYPE, headers={"grpc-message": message})


@openapi.summary("Envoy's ShouldRateLimit over HTTP/1.1, for a gRPC-to-HTTP/1.1 bridge")
@openapi.tag("envoy")
@openapi.body({CONTENT_TYPE: bytes}, description="envoy.service.ratelimit.v3.RateLimitRequest")
@openapi.response(200, {CONTENT_TYPE: bytes}, "envoy.service.ratelimit.v3.RateLimitResponse")
@openapi.response(400, {CONTENT_TYPE: bytes}, "not a RateLimitRequest, or an invalid one")
@openapi.response(503, {CONTENT_TYPE: bytes}, "no valid configuration, or cluster unreachable")
async def should_rate_limit(request: Request) -> HTTPResponse:
    """``ShouldRateLimit``: the protobuf request in, the protobuf answer out."""
    try:
        call = rls_pb2.RateLimitRequest.FromString(request.body)
    except DecodeError as error:
        return _error(400, f"not a RateLimitRequest: {error}")
    answer = await _rls(request).answer(
        call, grpc_timeout_seconds(request.headers.get("grpc-timeout"))
    )
    if answer.response is None:
        return _error(_HTTP_STATUS.get(answer.code.name, 503), answer.message)
    return raw(answer.response.SerializeToString(), content_type=CONTENT_TYPE)


@openapi.summary("gRPC health Check over HTTP/1.1, for a gRPC-to-HTTP/1.1 bridge")
@openapi.tag("envoy")
@openapi.body({CONTENT_TYPE: bytes}, description="grpc.health.v1.HealthCheckRequest")
@openapi.response(200, {CONTENT_TYPE: bytes}, "grpc.health.v1.HealthCheckResponse: SERVING")
@openapi.response(400, {CONTENT_TYPE: bytes}, "not a HealthCheckRequest")
@openapi.response(404, {CONTENT_TYPE: bytes}, "a service this server does not know")
@openapi.response(503, {CONTENT_TYPE: bytes}, "not serving (not connected, draining, or no config)")
async def health_check(request: Request) -> HTTPResponse:
    """``grpc.health.v1.Health/Check`` of the server (``""``) and of the service, as the
    gRPC port answers it; another service name is unknown (gRPC's NOT_FOUND; 404, which
    Envoy maps to UNIMPLEMENTED)."""
    try:
        service = health_pb2.HealthCheckRequest.FromString(request.body).service
    except DecodeError as error:
        return _error(400, f"not a HealthCheckRequest: {error}")
    if service not in ("", SERVICE_NAME):
        return _error(404, f"unknown service {service!r}")
    if not _rls(request).serving:
        return _error(503, "NOT_SERVING")
    return raw(_SERVING, content_type=CONTENT_TYPE)
