"""Floods through the real nginx, 3 replicas and the cluster, per algorithm and per
strategy: admissions are exactly what the rule allows (a fixed or sliding window: its
limit, the window chosen so the flood cannot cross an edge and the sliding window has no
previous count; GCRA: its burst plus one, then one per emission interval elapsed), a
client with several limits gets exactly its tightest allowance and never more than any
limit's, and a shadow limit under the enforced one denies nothing."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from typing import Any

import aiohttp
import httpx
import pytest

from limiter import STRATEGY_NAMES
from tests.cluster import quiet_window
from tests.conftest import Topology
from tests.property.test_flood import PRODUCTION

REQUESTS = 900
CONCURRENCY = 300
SHADOW_HEADER = "X-RateLimit-Shadow-Denied"


async def flood(url: str, client_id: str) -> dict[str, Any]:
    """``REQUESTS`` GET /example for one client from ``CONCURRENCY`` connections: the
    statuses, how many 200s named a shadow denial, and the flood's length in seconds."""
    statuses: Counter[int] = Counter()
    shadowed = 0
    pending = iter(range(REQUESTS))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def worker() -> None:
            nonlocal shadowed
            for _ in pending:
                async with session.get(
                    f"{url}/example", headers={"X-Api-Id": client_id}
                ) as response:
                    await response.read()
                    statuses[response.status] += 1
                    shadowed += response.status == 200 and SHADOW_HEADER in response.headers

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = asyncio.get_running_loop().time() - started
    return {"statuses": statuses, "shadowed": shadowed, "elapsed": elapsed}


def create(topology: Topology, limits: list[dict[str, Any]]) -> str:
    response = httpx.post(
        f"{topology.url}/bucket",
        json={"name": f"policy-flood-{uuid.uuid4().hex}", "limits": limits},
        headers=topology.admin,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def remaining_by_name(topology: Topology, client_id: str) -> dict[str, int]:
    """Each limit's remaining, as GET /bucket/{id} reports it after the flood."""
    response = httpx.get(f"{topology.url}/bucket/{client_id}", headers=topology.admin, timeout=30)
    assert response.status_code == 200, response.text
    return {limit["name"]: limit["remaining"] for limit in response.json()["usage"]["limits"]}


def flooded(topology: Topology, limits: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    client_id = create(topology, limits)
    seen = asyncio.run(flood(topology.url, client_id))
    assert set(seen["statuses"]) <= {200, 429}, dict(seen["statuses"])
    return client_id, seen


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_each_algorithm_admits_exactly_what_its_rule_allows(
    strategy: str, topology: Topology
) -> None:
    """A fixed window and a sliding window admit exactly their limit; GCRA exactly its
    burst plus one plus one per emission interval the flood lasted (its interval here is
    an hour / 60, longer than any flood, so exactly burst + 1)."""
    topology.use(strategy, **PRODUCTION)
    window = quiet_window()
    cases = {
        "fixed_window": ({"limit": 130}, 130),
        "sliding_window": ({"limit": 140}, 140),
        "gcra": ({"limit": 60, "burst": 149}, 150),
    }
    for algorithm, (fields, expected) in cases.items():
        limit = {"name": "only", "algorithm": algorithm, "window_seconds": window, **fields}
        client_id, seen = flooded(topology, [limit])
        admitted = seen["statuses"][200]
        print(f"\n{strategy} {algorithm}: {dict(seen['statuses'])} in {seen['elapsed']:.2f}s")
        if algorithm == "gcra":
            emission_seconds = window / fields["limit"]
            bound = expected + math.ceil(seen["elapsed"] / emission_seconds)
            assert expected <= admitted <= bound, f"{strategy} gcra: {admitted} admitted"
            if seen["elapsed"] < emission_seconds:
                assert admitted == expected
        else:
            assert admitted == expected, f"{strategy} {algorithm}: {admitted} admitted"
        if algorithm == "fixed_window":
            assert remaining_by_name(topology, client_id) == {"only": 0}


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_a_client_with_several_limits_gets_its_tightest_and_exceeds_none(
    strategy: str, topology: Topology
) -> None:
    """Three limits of three algorithms decided together: the flood admits exactly the
    tightest limit's allowance, whichever algorithm's it is, each limit's usage counts
    exactly the admitted requests, and a shadow limit below them denies nothing but is
    named on the 200s it would have denied."""
    topology.use(strategy, **PRODUCTION)
    window = quiet_window()

    def policy(gcra_burst: int, sliding: int, fixed: int) -> list[dict[str, Any]]:
        return [
            {
                "name": "burst",
                "algorithm": "gcra",
                "limit": 60,
                "window_seconds": window,
                "burst": gcra_burst,
            },
            {
                "name": "hourly",
                "algorithm": "sliding_window",
                "limit": sliding,
                "window_seconds": window,
            },
            {
                "name": "daily",
                "algorithm": "fixed_window",
                "limit": fixed,
                "window_seconds": window,
            },
        ]

    for gcra_burst, sliding, fixed in ((49, 70, 80), (199, 70, 80), (199, 170, 40)):
        client_id, seen = flooded(topology, policy(gcra_burst, sliding, fixed))
        admitted = seen["statuses"][200]
        expected = min(gcra_burst + 1, sliding, fixed)
        print(f"\n{strategy} limits {gcra_burst + 1}/{sliding}/{fixed}: {admitted} admitted")
        assert seen["elapsed"] < window / 60, "the flood outlasted an emission interval"
        assert admitted == expected
        remaining = remaining_by_name(topology, client_id)
        assert remaining["daily"] == fixed - admitted
        assert remaining["hourly"] == sliding - admitted

    shadow = [
        {"name": "enforced", "algorithm": "fixed_window", "limit": 120, "window_seconds": window},
        {
            "name": "trial",
            "algorithm": "fixed_window",
            "limit": 30,
            "window_seconds": window,
            "shadow": True,
        },
    ]
    client_id, seen = flooded(topology, shadow)
    assert seen["statuses"][200] == 120
    assert seen["shadowed"] == 90, "every admission past the shadow limit names it"
    assert remaining_by_name(topology, client_id) == {"enforced": 0, "trial": 0}
