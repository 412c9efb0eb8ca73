"""A flood of random client ids (each unknown, each a registry miss) must not make real
clients unknown or slow: they are read from the worker's own record memo, which misses
never enter, whatever the misses do to the near cache."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter

import aiohttp

from tests.integration.conftest import Replicas, create_client

RANDOM_IDS = 20_000
CONCURRENCY = 64
REAL_REQUESTS = 200


async def real_client_latencies(
    url: str, client_id: str, requests: int
) -> tuple[list[float], Counter[int]]:
    """Sequential requests of one real client: their latencies and statuses."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            started = time.monotonic()
            async with session.get(f"{url}/example", headers={"X-Api-Id": client_id}) as response:
                await response.read()
                statuses[response.status] += 1
            latencies.append(time.monotonic() - started)
    return latencies, statuses


async def unknown_flood(url: str, count: int, concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    pending = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in pending:
                headers = {"X-Api-Id": str(uuid.uuid4())}
                async with session.get(f"{url}/example", headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_a_flood_of_unknown_ids_leaves_real_clients_known_and_fast(replicas: Replicas) -> None:
    """During 20,000 requests with random ids (all 404), a real client's every request is
    still decided (200, never 404); its latency is printed beside a quiet baseline."""
    replica = replicas.start("unknown-ids")
    client = create_client(replica, limit=10**9, window_seconds=3600)

    async def scenario() -> tuple[list[float], list[float], Counter[int], Counter[int], float]:
        quiet, _ = await real_client_latencies(replica.url, client["id"], REAL_REQUESTS)
        started = time.monotonic()
        flood = asyncio.create_task(unknown_flood(replica.url, RANDOM_IDS, CONCURRENCY))
        loaded: list[float] = []
        real: Counter[int] = Counter()
        while not flood.done():
            latencies, statuses = await real_client_latencies(replica.url, client["id"], 20)
            loaded += latencies
            real += statuses
        return quiet, loaded, real, await flood, time.monotonic() - started

    quiet, loaded, real, unknown, elapsed = asyncio.run(scenario())
    print(
        f"\n{RANDOM_IDS} random ids in {elapsed:.1f}s ({dict(unknown)}); real client "
        f"p50/p99 quiet {statistics.median(quiet) * 1000:.1f}/{p99(quiet) * 1000:.1f} ms, "
        f"during the flood {statistics.median(loaded) * 1000:.1f}/{p99(loaded) * 1000:.1f} ms "
        f"over {len(loaded)} requests ({dict(real)})"
    )
    assert unknown == {404: RANDOM_IDS}
    assert set(real) == {200}, real
