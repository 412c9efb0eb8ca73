"""The gRPC listener of one replica worker: Envoy's ``RateLimitService`` and
``grpc.health.v1``, on the worker's own event loop.

Why inside the Sanic worker rather than a process of its own: the decisions need the
worker's connection, strategy, lanes and deny cache, and sharing them is what lets a
request's descriptors batch with the HTTP route's decisions on the same shard entry.
With several workers (``RATELIMIT_WORKERS``), every worker of a replica binds the same
port with ``SO_REUSEPORT`` and the kernel spreads connections over them. With one worker
(the default) the port is bound exclusively: ``SO_REUSEPORT`` would also let another
process (a second replica given the same port) share it silently and take half the
calls to its own cluster, so a replica that finds its port taken fails to start instead.

Answers:

- a decision: ``OK`` or ``OVER_LIMIT`` (see :mod:`rls.service`);
- ``INVALID_ARGUMENT``: a request no answer fits (:class:`rls.errors.RequestError`);
- ``UNAVAILABLE``: no valid configuration yet, the worker not connected to the cluster,
  or the cluster unreachable. What Envoy does then is its ``failure_mode_deny``: this
  service's own ``RATELIMIT_FAILURE_MODE`` is for its HTTP routes.

Deadline: Envoy gives the call a timeout (20 ms by default) and sends it as
``grpc-timeout``; a decision is bounded by that, less :data:`DEADLINE_MARGIN_SECONDS`
for the answer to travel back, and by ``RATELIMIT_DECISION_TIMEOUT_SECONDS``. A key too
busy to decide by then is a contended denial (OVER_LIMIT, nothing counted) when the
cluster is otherwise answering: Envoy sees an answer in time rather than a timeout it
would let through.

Health: ``""`` and ``envoy.service.ratelimit.v3.RateLimitService`` are SERVING while the
worker is connected, not draining, and has a configuration; NOT_SERVING otherwise, so
Envoy's health checks move calls to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sanic.log import logger

from api.backend import Backend
from api.settings import Settings
from limiter import BackendError
from rls import metrics
from rls.errors import RequestError
from rls.reload import EXAMPLE_DIR, ConfigWatch
from rls.service import Decider, response

__all__ = ["DEADLINE_MARGIN_SECONDS", "SERVICE_NAME", "RlsServer"]

SERVICE_NAME = "envoy.service.ratelimit.v3.RateLimitService"
#: Kept from the caller's deadline for the answer's way back.
DEADLINE_MARGIN_SECONDS = 0.002
#: How often the health status follows the worker's state.
HEALTH_EVERY_SECONDS = 0.5


class _Servicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, server: RlsServer) -> None:
        self.server = server

    async def ShouldRateLimit(  # the protocol's name
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> rls_pb2.RateLimitResponse:
        return await self.server.should_rate_limit(request, context)


class _Health(health.aio.HealthServicer):
    """The standard health service, its status worked out afresh for every ``Check`` (a
    replica that has just connected is SERVING at once); ``Watch`` streams follow the
    status the server sets every :data:`HEALTH_EVERY_SECONDS`."""

    def __init__(self, server: RlsServer) -> None:
        super().__init__()
        self.server = server

    async def Check(  # the protocol's name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        await self.server.set_health()
        return await super().Check(request, context)


class RlsServer:
    """One worker's gRPC server; :meth:`start` in ``before_server_start``,
    :meth:`drain` when the replica drains, :meth:`stop` at the end."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        directory = settings.rls_config_dir or EXAMPLE_DIR
        self.watch = ConfigWatch(directory, settings.rls_reload_seconds, metrics.config_loaded)
        self.decider = Decider(settings.near_limit_share, settings.decision_timeout_seconds)
        self.health = _Health(self)
        self._server: grpc.aio.Server | None = None
        self._following: asyncio.Task[None] | None = None
        self.draining = False

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.grpc_port}"

    async def start(self) -> None:
        metrics.preset()
        shared = int(self.settings.workers > 1)
        server = grpc.aio.server(options=[("grpc.so_reuseport", shared)])
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(_Servicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as error:  # grpcio reports a port in use this way
            raise OSError(f"cannot listen for gRPC on {self.address}: {error}") from error
        if bound == 0:
            raise OSError(f"cannot listen for gRPC on {self.address} (in use?)")
        self.watch.start()
        await server.start()
        self._server = server
        await self.set_health()
        self._following = asyncio.get_running_loop().create_task(
            self._follow_health(), name="ratelimit-rls-health"
        )
        logger.info("rate limit service (gRPC) on %s", self.address)

    @property
    def serving(self) -> bool:
        return self.backend.ready and not self.draining and self.watch.config is not None

    async def set_health(self) -> None:
        """Publishes :attr:`serving` as the health of the server and of the service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def _follow_health(self) -> None:
        while True:
            await self.set_health()
            await asyncio.sleep(HEALTH_EVERY_SECONDS)

    async def should_rate_limit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> rls_pb2.RateLimitResponse:
        config = self.watch.config
        if config is None:
            metrics.count_answer("unavailable")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no valid rate limit configuration")
        assert config is not None
        loop = asyncio.get_running_loop()
        budget = self.settings.decision_timeout_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            budget = min(budget, max(remaining - DEADLINE_MARGIN_SECONDS, 0.0))
        try:
            strategy = self.backend.require_connection().strategy
            outcome = await self.decider.decide(request, config, strategy, loop.time() + budget)
        except RequestError as error:
            metrics.count_answer("invalid")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise  # abort raises; this only tells type checkers
        except BackendError as error:
            metrics.count_answer("unavailable")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"rate limit cluster: {error}")
            raise
        metrics.count_answer("over_limit" if outcome.denied else "ok")
        return response(outcome)

    async def drain(self) -> None:
        """Reports NOT_SERVING, so health checks move new calls elsewhere; answers on."""
        self.draining = True
        await self.set_health()

    async def stop(self, grace_seconds: float = 1.0) -> None:
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        if self._server is not None:
            await self._server.stop(grace_seconds)
        await self.decider.close()
        await self.watch.close()
