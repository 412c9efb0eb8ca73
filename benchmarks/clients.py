"""Benchmark clients created through the API (``POST /bucket`` as the admin), and the
replicas' registry warmed up with them, as a long-running replica's would be."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import aiohttp
import httpx

from benchmarks.stack import ADMIN

__all__ = ["create_client", "create_clients", "warm_registry"]


def create_client(base: str, limit: int) -> str:
    response = httpx.post(
        f"{base}/bucket",
        json={"name": f"bench-{uuid.uuid4().hex}", "limit": limit, "window_seconds": 3600},
        headers=ADMIN,
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["id"])


async def create_clients(
    base: str,
    count: int,
    limit: int,
    concurrency: int = 32,
    *,
    limits: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """``count`` clients with hour-long first_request windows of ``limit``, or with the
    policy ``limits`` (``POST /bucket``'s list) when given; ``concurrency`` creations in
    flight (one by one took seconds per round; 100k take a few minutes)."""
    ids: list[str] = []
    pending = iter(range(count))
    async with aiohttp.ClientSession(base_url=base, headers=ADMIN) as session:

        async def creator() -> None:
            for _ in pending:
                body: dict[str, Any] = {"name": f"bench-{uuid.uuid4().hex}"}
                if limits is None:
                    body.update(limit=limit, window_seconds=3600, window_alignment="first_request")
                else:
                    body["limits"] = [dict(item) for item in limits]
                async with session.post("/bucket", json=body) as response:
                    response.raise_for_status()
                    ids.append(str((await response.json())["id"]))

        await asyncio.gather(*(creator() for _ in range(concurrency)))
    return ids


async def warm_registry(
    replica_urls: Sequence[str], ids: Sequence[str], concurrency: int = 32
) -> None:
    """One guarded request per client on every replica, straight to it (not through
    nginx), all replicas at once: each replica then holds every client's record in its
    memo and near cache, as a long-running replica does for its active clients. Without
    it a 5 s run over 1,000 clients mostly measures first lookups (a cluster read per
    request)."""

    async def requester(session: aiohttp.ClientSession, pending: Iterator[str]) -> None:
        for client_id in pending:
            async with session.get("/example", headers={"X-Api-Id": client_id}) as reply:
                await reply.read()

    async def warm(url: str) -> None:
        pending = iter(ids)
        async with aiohttp.ClientSession(base_url=url) as session:
            await asyncio.gather(*(requester(session, pending) for _ in range(concurrency)))

    await asyncio.gather(*(warm(url) for url in replica_urls))
