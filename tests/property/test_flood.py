"""A flood from one client, through the real nginx, 3 real replicas and the real cluster,
with the production timeouts and failure mode ``open``: exactly the limit is admitted,
nothing fails open, every answer is 200 or 429, for every strategy. Then the deny cache
under PATCH and DELETE, and a busy key told from an unreachable cluster."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.settings import Settings
from limiter import STRATEGY_NAMES, ClusterLink
from limiter.kv_window import policy_key
from tests.cluster import quiet_window
from tests.conftest import Topology
from tests.loop import LoopThread

FLOOD_REQUESTS = 1500
FLOOD_CONCURRENCY = 300
#: What a user runs: the defaults of every timeout, and failing open, so that any
#: decision that turned into an admission by timeout would show up as over-admission.
DEFAULTS = Settings()
PRODUCTION = {
    "decision_timeout_seconds": DEFAULTS.decision_timeout_seconds,
    "lock_wait_seconds": DEFAULTS.lock_wait_seconds,
    "lock_lease_seconds": DEFAULTS.lock_lease_seconds,
    "cas_max_attempts": DEFAULTS.cas_max_attempts,
    "failure_mode": "open",
}
#: The decision timeout plus a margin: no decision of a replica may take longer.
DECISION_BOUND_SECONDS = DEFAULTS.decision_timeout_seconds + 1.0


async def flood(url: str, client_id: str, requests: int, concurrency: int) -> dict[str, Any]:
    """Fires ``requests`` GET /example for one client from ``concurrency`` connections."""
    statuses: Counter[int] = Counter()
    degraded = 0
    contended = 0
    slowest = 0.0
    pending = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal degraded, contended, slowest
            for _ in pending:
                started = time.monotonic()
                async with session.get(
                    f"{url}/example", headers={"X-Api-Id": client_id}
                ) as response:
                    body = await response.json(content_type=None)
                    statuses[response.status] += 1
                    degraded += "X-RateLimit-Degraded" in response.headers
                    contended += "busy" in str(body.get("error", ""))
                slowest = max(slowest, time.monotonic() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return {
        "statuses": statuses,
        "degraded": degraded,
        "contended": contended,
        "slowest": slowest,
        "elapsed": elapsed,
    }


def create(topology: Topology, limit: int, window: int) -> str:
    response = httpx.post(
        f"{topology.url}/bucket",
        json={"name": f"flood-{uuid.uuid4().hex}", "limit": limit, "window_seconds": window},
        headers=topology.admin,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def slowest_decision_bucket(topology: Topology) -> float:
    """The upper bound of the slowest decision any replica has measured (histogram)."""
    worst = 0.0
    for index in range(topology.REPLICAS):
        port = topology.stack.replica_port(index)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name != "ratelimit_decision_seconds":
                continue
            buckets = sorted(
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name.endswith("_bucket")
            )
            total = buckets[-1][1]
            worst = max(worst, next(le for le, count in buckets if count >= total))
    return worst


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_a_flood_on_one_client_admits_exactly_its_limit(strategy: str, topology: Topology) -> None:
    """1,500 requests at 300 concurrency for one client, limits 108 and 1,000: exactly the
    limit admitted, no answer marked degraded (nothing failed open), only 200 and 429,
    and no replica took longer than the decision timeout plus 1 s to decide."""
    topology.use(strategy, **PRODUCTION)
    window = quiet_window()
    for limit in (108, 1000):
        client_id = create(topology, limit, window)
        seen = asyncio.run(flood(topology.url, client_id, FLOOD_REQUESTS, FLOOD_CONCURRENCY))
        statuses = seen["statuses"]
        print(
            f"\n{strategy} limit {limit}: {dict(statuses)} in {seen['elapsed']:.2f}s "
            f"({FLOOD_REQUESTS / seen['elapsed']:.0f} req/s), slowest {seen['slowest']:.2f}s, "
            f"contended {seen['contended']}, degraded {seen['degraded']}"
        )
        assert set(statuses) <= {200, 429}, dict(statuses)
        assert seen["degraded"] == 0
        assert statuses[200] == limit, f"{strategy}: {statuses[200]} admitted, limit {limit}"
    assert slowest_decision_bucket(topology) <= DECISION_BOUND_SECONDS


@pytest.fixture
def one_replica(topology: Topology) -> Iterator[str]:
    """The URL of one replica of the topology, reached directly (not through nginx)."""
    yield f"http://127.0.0.1:{topology.stack.replica_port(0)}"


def test_a_raised_limit_is_admitted_at_once_and_a_deleted_client_is_unknown(
    topology: Topology, one_replica: str
) -> None:
    """A replica that denies an exhausted client from its deny cache admits it again right
    after a PATCH raising its limit (exactly the extra room), and answers 404 right after
    a DELETE."""
    topology.use("entry_processor", **PRODUCTION)
    client_id = create(topology, 3, quiet_window())
    guarded = {"X-Api-Id": client_id}
    with httpx.Client(base_url=one_replica, timeout=30) as http:
        statuses = [http.get("/example", headers=guarded).status_code for _ in range(6)]
        assert statuses == [200, 200, 200, 429, 429, 429]
        patched = http.patch(f"/bucket/{client_id}", json={"limit": 5}, headers=topology.admin)
        assert patched.status_code == 200, patched.text
        statuses = [http.get("/example", headers=guarded).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        deleted = http.delete(f"/bucket/{client_id}", headers=topology.admin)
        assert deleted.status_code == 204
        assert http.get("/example", headers=guarded).status_code == 404


def test_a_busy_key_is_denied_while_an_unreachable_cluster_would_fail_open(
    topology: Topology, one_replica: str, link: ClusterLink, loop: LoopThread
) -> None:
    """With failure mode open, a request whose key stays locked (busy, the cluster
    answering) is denied 429 contended with Retry-After 1 within the decision timeout and
    a margin, never admitted; the failing-open side is in test_api_cluster."""
    topology.use("lock", **PRODUCTION)
    window = quiet_window()
    client_id = create(topology, 100, window)
    counters = loop.run(link.get_map(topology.settings.counters_map))
    key = policy_key(client_id)

    async def held(body: Any) -> Any:
        async def holder(locked: asyncio.Event, release: asyncio.Event) -> None:
            assert await counters.try_lock(key, lease_time=10, timeout=5)
            locked.set()
            await release.wait()
            await counters.unlock(key)

        locked, release = asyncio.Event(), asyncio.Event()
        holding = asyncio.create_task(holder(locked, release))
        await locked.wait()
        try:
            return await asyncio.to_thread(body)
        finally:
            release.set()
            await holding

    def ask() -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = httpx.get(f"{one_replica}/example", headers={"X-Api-Id": client_id}, timeout=30)
        return response, time.monotonic() - started

    response, elapsed = loop.run(held(ask))
    print(f"\nbusy key answered {response.status_code} in {elapsed:.2f}s")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert "x-ratelimit-degraded" not in response.headers
    assert elapsed < DECISION_BOUND_SECONDS
    after = httpx.get(f"{one_replica}/example", headers={"X-Api-Id": client_id}, timeout=30)
    assert after.status_code == 200
