"""The cluster side of one Sanic worker: its client, strategy and registry.

The worker starts listening at once and connects in the background, retrying until the
cluster answers, so replicas can start before the members; until then ``/ready`` is 503
and the guarded route follows the failure policy. Once connected, the client reconnects
by itself whenever the cluster goes away (see :class:`limiter.ClusterLink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, cast

from sanic import Request
from sanic.log import error_logger, logger

from api.metrics import MULTIPROC_ENV, MetricsObserver, RegistryMetrics
from api.settings import Settings
from limiter import BackendUnavailable, ClusterLink, Strategy, connect, create_strategy
from registry import Registry, changes_log_name, near_cache_config

__all__ = ["Backend", "Connection", "backend_of", "workers_connected"]

#: Pause between two failed connection attempts, doubling up to the maximum.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
#: Longest wait for the client to shut down at stop.
CLOSE_TIMEOUT_SECONDS = 10.0
#: How long a new connection waits for its registry listener to reach every member and
#: for its first read of the change log (the memo keeps nothing before both); past it the
#: worker starts anyway, its memo later.
LISTENER_SETTLE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Connection:
    """What a connected worker holds: all of it, or (before connecting) none of it."""

    link: ClusterLink
    strategy: Strategy
    registry: Registry


class Backend:
    """The cluster side of one worker: ``connection`` once connected, None until then."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: Connection | None = None
        #: Set on SIGTERM: /ready answers 503 so the balancer stops sending requests.
        self.draining = False
        self._connecting: asyncio.Task[None] | None = None
        self._following_log: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.link.connected

    @property
    def ready(self) -> bool:
        return self.connected and not self.draining

    def require_connection(self) -> Connection:
        """The connection, or :class:`limiter.BackendUnavailable` before there is one and
        while it reconnects."""
        if self.connection is None:
            raise BackendUnavailable("not connected to the cluster yet")
        if not self.connection.link.connected:
            # Reconnecting: until the link has its maps back and loaded, a registry read
            # could find a partition still loading and call an existing client unknown.
            raise BackendUnavailable("reconnecting to the cluster")
        return self.connection

    def start(self) -> None:
        self._connecting = asyncio.get_running_loop().create_task(
            self._connect_until_done(), name="ratelimit-connect"
        )

    async def _connect_until_done(self) -> None:
        pause = RETRY_FIRST_SECONDS
        while True:
            try:
                await self._connect_once()
                _mark_connected(True)
                logger.info(
                    "connected to cluster %r, strategy %s",
                    self.settings.hazelcast_cluster_name,
                    self.settings.strategy,
                )
                return
            except Exception as error:
                error_logger.warning("cluster not reachable yet (%s); retrying", error)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_SECONDS)

    async def _connect_once(self) -> None:
        config = self.settings.registry_config
        link = await connect(self.settings, near_caches=near_cache_config(config))
        try:
            counters = await link.get_map(self.settings.counters_map)
            clients = await link.get_map(config.clients_map)
            names = await link.get_map(config.names_map)
            changes: Any = await link.client.get_ringbuffer(changes_log_name(config.clients_map))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.close(), CLOSE_TIMEOUT_SECONDS)
            raise
        registry = Registry(
            clients,
            names,
            changes,
            config,
            listening_everywhere=link.listening_everywhere,
            observer=RegistryMetrics(),
        )
        link.on_events_at_risk(registry.distrust)
        following_log = asyncio.get_running_loop().create_task(
            registry.follow_log(), name="ratelimit-registry-log"
        )
        try:
            await registry.follow_changes()
            if not await registry.until_trusted(LISTENER_SETTLE_SECONDS):
                error_logger.warning(
                    "registry listener not on every member after %.0fs; "
                    "client records are read from the cluster until it is",
                    LISTENER_SETTLE_SECONDS,
                )
        except BaseException:
            following_log.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.close(), CLOSE_TIMEOUT_SECONDS)
            raise
        self._following_log = following_log
        strategy = create_strategy(
            self.settings,
            counters,
            observer=MetricsObserver(self.settings.strategy),
            liveness=link.liveness,
        )
        link.start_heartbeat(
            counters,
            self.settings.heartbeat_interval_seconds,
            self.settings.decision_timeout_seconds,
        )
        self.connection = Connection(link, strategy, registry)

    async def close(self) -> None:
        """Stops connecting, lets the strategy finish, shuts the client down."""
        _mark_connected(False)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._following_log is not None:
            self._following_log.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following_log
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.strategy.close(), CLOSE_TIMEOUT_SECONDS)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.link.close(), CLOSE_TIMEOUT_SECONDS)


def _marker_dir() -> Path | None:
    """The folder the replica's workers share (set up by ``python -m api``), if any."""
    folder = os.environ.get(MULTIPROC_ENV)
    return Path(folder) if folder else None


def _mark_connected(connected: bool) -> None:
    """Leaves (or removes) a mark that this worker has connected, for its siblings' /ready."""
    folder = _marker_dir()
    if folder is None:
        return
    mark = folder / f"connected-{os.getpid()}"
    if connected:
        mark.touch()
    else:
        mark.unlink(missing_ok=True)


def workers_connected(workers: int) -> bool:
    """Whether every worker of this replica has connected: /ready answers for the whole
    replica, not only for the worker that happens to receive the probe. A mark left by a
    worker that died does not count."""
    folder = _marker_dir()
    if folder is None or workers <= 1:
        return True
    alive = 0
    for mark in folder.glob("connected-*"):
        try:
            os.kill(int(mark.name.removeprefix("connected-")), 0)
        except (ValueError, ProcessLookupError):
            continue
        alive += 1
    return alive >= workers


def backend_of(request: Request) -> Backend:
    """The backend of the worker answering ``request`` (set by :func:`api.app.create_app`)."""
    return cast(Backend, request.app.ctx.backend)
