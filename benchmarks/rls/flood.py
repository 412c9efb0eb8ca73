"""The flood through Envoy: many requests at once on one key with an exact limit, as
``tests/property/test_flood.py`` floods one client through nginx. What it shows: how many
requests reached the upstream (admitted by the service, or let through by Envoy when the
service did not answer within the filter's timeout) against the exact limit.

Each flood takes a key of its own, an IP of the ``192.0.2.*`` rule (100 per hour) sent
in ``X-Forwarded-For``, which Envoy's ``remote_address`` action reads; the counter then
starts at 0 whatever ran before. The rule's windows are clock hours (upstream's units):
a flood that would start in the last seconds of an hour waits for the next one, so that
it never spans two windows (which would admit up to twice the limit, rightly).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import aiohttp

__all__ = ["FLOOD_CONNECTIONS", "FLOOD_LIMIT", "FLOOD_REQUESTS", "FloodSeen", "flood", "flood_ip"]

FLOOD_REQUESTS = 1500
FLOOD_CONNECTIONS = 300
#: The limit of the ``192.0.2.*`` rule in ``storefront.yaml``.
FLOOD_LIMIT = 100
WINDOW_SECONDS = 3600
#: A flood takes a second or two; one starting closer than this to an hour's end waits.
EDGE_MARGIN_SECONDS = 20


@dataclasses.dataclass
class FloodSeen:
    statuses: dict[int, int]
    failed: int
    seconds: float


def flood_ip(index: int) -> str:
    """The ``index``-th flood's key (1-254): an address of the flood rule."""
    return f"192.0.2.{1 + index % 254}"


def _clear_of_window_edge() -> None:
    """Returns at once unless the hour ends within the margin; then after it ended (a
    wait on the clock, not on a server)."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < EDGE_MARGIN_SECONDS:
        time.sleep(left + 0.5)


async def _flood(url: str, ip: str, requests: int, connections: int) -> FloodSeen:
    statuses: Counter[int] = Counter()
    failed = 0
    pending = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"X-Forwarded-For": ip}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal failed
            for _ in pending:
                try:
                    async with session.get(f"{url}/", headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1
                except aiohttp.ClientError:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return FloodSeen(dict(statuses), failed, elapsed)


def flood(
    url: str, ip: str, requests: int = FLOOD_REQUESTS, connections: int = FLOOD_CONNECTIONS
) -> FloodSeen:
    """``requests`` GETs through the Envoy at ``url`` from ``connections`` connections at
    once, all keyed ``ip``."""
    _clear_of_window_edge()
    return asyncio.run(_flood(url, ip, requests, connections))
