"""X-RateLimit-Cost through nginx to the 3 replicas and the real cluster, for each
strategy: costs count, a peek (cost 0) reports and counts nothing, a cost above the limit
never passes, and concurrent mixed costs admit exactly what fits.

The tests are grouped by strategy (a module-scoped parameter), so the replicas restart
once per strategy.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from limiter import STRATEGY_NAMES
from tests.cluster import quiet_window
from tests.conftest import Topology

COST = "X-RateLimit-Cost"


@pytest.fixture(scope="module", params=STRATEGY_NAMES)
def strategy(request: pytest.FixtureRequest, topology: Topology) -> str:
    name: str = request.param
    topology.use(name)
    return name


@pytest.fixture
def http(topology: Topology, strategy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=topology.url, timeout=30) as client:
        yield client


def new_client(http: httpx.Client, topology: Topology, limit: int, **fields: Any) -> str:
    fields.setdefault("window_seconds", quiet_window())
    created = http.post(
        "/bucket",
        json={"name": f"cost-{uuid.uuid4().hex}", "limit": limit, **fields},
        headers=topology.admin,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def guarded(http: httpx.Client, client_id: str, cost: int | None = None) -> httpx.Response:
    headers = {"X-Api-Id": client_id}
    if cost is not None:
        headers[COST] = str(cost)
    return http.get("/example", headers=headers)


def used(http: httpx.Client, topology: Topology, client_id: str) -> int:
    shown = http.get(f"/bucket/{client_id}", headers=topology.admin)
    assert shown.status_code == 200, shown.text
    return int(shown.json()["usage"]["used"])


def test_costs_of_3_on_a_limit_of_10_admit_three_and_store_9(
    http: httpx.Client, topology: Topology
) -> None:
    """Costs 3, 3, 3, 3 on a limit of 10: three admitted (remaining 7, 4, 1), the fourth
    denied with Retry-After, and the window holds 9."""
    client_id = new_client(http, topology, 10)
    answers = [guarded(http, client_id, 3) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["7", "4", "1", "1"]
    assert answers[3].json() == {"error": "rate limit exceeded"}
    assert answers[3].headers["Retry-After"] == answers[3].headers["X-RateLimit-Reset"]
    assert used(http, topology, client_id) == 9


def test_a_peek_reports_the_rest_and_counts_nothing(http: httpx.Client, topology: Topology) -> None:
    """After 9 of 10 are used, a peek answers 200 with remaining 1 and counts nothing: a
    cost-1 request is then admitted and the next one denied."""
    client_id = new_client(http, topology, 10)
    for _ in range(3):
        assert guarded(http, client_id, 3).status_code == 200
    peeked = guarded(http, client_id, 0)
    assert peeked.status_code == 200, peeked.text
    assert peeked.headers["X-RateLimit-Remaining"] == "1"
    assert peeked.headers["RateLimit"].startswith('"default";r=1;t=')
    assert "Retry-After" not in peeked.headers
    assert used(http, topology, client_id) == 9
    assert guarded(http, client_id, 1).status_code == 200
    assert guarded(http, client_id).status_code == 429
    assert used(http, topology, client_id) == 10


def test_a_peek_on_an_exhausted_window_is_a_429(http: httpx.Client, topology: Topology) -> None:
    """A peek on a window with nothing left answers 429 with remaining 0 and Retry-After,
    as a request of cost 1 would, and the window still holds what it held."""
    client_id = new_client(http, topology, 2)
    assert guarded(http, client_id, 2).status_code == 200
    peeked = guarded(http, client_id, 0)
    assert peeked.status_code == 429
    assert peeked.headers["X-RateLimit-Remaining"] == "0"
    assert peeked.headers["Retry-After"] == peeked.headers["X-RateLimit-Reset"]
    assert used(http, topology, client_id) == 2


def test_a_peek_opens_no_window(http: httpx.Client, topology: Topology) -> None:
    """A peek on a first_request client with no window reports the full limit and a whole
    window, and opens nothing: the window opens at the first counted request, later."""
    client_id = new_client(http, topology, 5, window_seconds=3600, window_alignment="first_request")
    peeked = guarded(http, client_id, 0)
    assert peeked.status_code == 200
    assert (peeked.headers["X-RateLimit-Remaining"], peeked.headers["X-RateLimit-Reset"]) == (
        "5",
        "3600",
    )
    time.sleep(1.5)
    counted = guarded(http, client_id, 1)
    assert counted.status_code == 200
    # A window opened by the peek would end 1.5 s sooner: 3599 s rounded up.
    assert counted.headers["X-RateLimit-Reset"] == "3600"
    assert used(http, topology, client_id) == 1


def test_a_cost_above_the_limit_is_a_429_without_retry_after(
    http: httpx.Client, topology: Topology
) -> None:
    """A cost above the client's limit is denied (it can never pass) without Retry-After,
    reports the window as it is, and counts nothing."""
    client_id = new_client(http, topology, 10)
    assert guarded(http, client_id, 4).status_code == 200
    over = guarded(http, client_id, 11)
    assert over.status_code == 429
    assert "above the client's limit" in over.json()["error"]
    assert "Retry-After" not in over.headers
    assert over.headers["X-RateLimit-Remaining"] == "6"
    assert used(http, topology, client_id) == 4


def test_a_malformed_cost_through_nginx_is_a_400(http: httpx.Client, topology: Topology) -> None:
    """Through nginx, a malformed cost is the API's 400 naming the header, counting nothing."""
    client_id = new_client(http, topology, 10)
    for value in ("-1", "1001", "2.5", "x"):
        refused = http.get("/example", headers={"X-Api-Id": client_id, COST: value})
        assert refused.status_code == 400, (value, refused.text)
        assert refused.json()["error"].startswith(f"{COST}:")
    assert used(http, topology, client_id) == 0


def test_concurrent_mixed_costs_admit_exactly_what_fits(topology: Topology, strategy: str) -> None:
    """60 concurrent requests of costs 1 to 5 on a limit of 50: the admitted costs sum to
    what the window holds, within the limit, and every denied request would not have
    fitted even at the end (nothing that fitted was turned away)."""
    limit = 50
    order = random.Random(7301)
    costs = [order.randint(1, 5) for _ in range(60)]

    async def fire(client_id: str) -> list[int]:
        limits = httpx.Limits(max_connections=30, max_keepalive_connections=30)
        async with httpx.AsyncClient(base_url=topology.url, limits=limits, timeout=30) as http:
            answers = await asyncio.gather(
                *(
                    http.get("/example", headers={"X-Api-Id": client_id, COST: str(cost)})
                    for cost in costs
                )
            )
        return [answer.status_code for answer in answers]

    with httpx.Client(base_url=topology.url, timeout=30) as http:
        client_id = new_client(http, topology, limit)
        statuses = asyncio.run(fire(client_id))
        stored = used(http, topology, client_id)
    assert set(statuses) <= {200, 429}
    admitted = sum(cost for cost, status in zip(costs, statuses, strict=True) if status == 200)
    denied = [cost for cost, status in zip(costs, statuses, strict=True) if status == 429]
    assert admitted == stored <= limit
    assert denied and all(stored + cost > limit for cost in denied)
