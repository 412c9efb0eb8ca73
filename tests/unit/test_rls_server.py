"""The gRPC listener of a replica: a port another replica already holds is refused, not
shared (two replicas on one port would split Envoy's calls between their clusters)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from api.backend import Backend
from api.settings import Settings
from rls.server import RlsServer
from stack import port_is_free

pytestmark = pytest.mark.unit


def free_port() -> int:
    return next(port for port in range(28281, 28381) if port_is_free(port))


def server(port: int, workers: int = 1) -> RlsServer:
    backend = cast(Backend, SimpleNamespace(ready=True))
    return RlsServer(Settings(grpc_port=port, workers=workers), backend)


def test_a_second_replica_on_a_taken_grpc_port_fails_to_start() -> None:
    """One worker binds its port alone: a second server on it raises at start."""

    async def run() -> Any:
        port = free_port()
        first, second = server(port), server(port)
        await first.start()
        try:
            with pytest.raises(OSError, match="cannot listen for gRPC"):
                await second.start()
        finally:
            await second.stop(0)
            await first.stop(0)

    asyncio.run(run())


def test_the_workers_of_one_replica_share_its_port() -> None:
    """With several workers, each binds the same port (SO_REUSEPORT)."""

    async def run() -> Any:
        port = free_port()
        first, second = server(port, workers=2), server(port, workers=2)
        await first.start()
        try:
            await second.start()
            await second.stop(0)
        finally:
            await first.stop(0)

    asyncio.run(run())
