"""Clients with a list of limits, end to end through a real replica, for each strategy:
the limit that denies and the headers that say so, PATCH keeping the usage of the limits
it keeps, usage per limit, shadow limits in a header and a metric, and clients of the
single form (also one stored before lists existed) as they were.

The three-limit client is chosen so that every step is decided by one limit alone,
whatever the timing: ``burst`` (gcra, 2 per 60 s, no burst: one request at once, then
one per 30 s), ``daily`` (fixed window, 5 per day from the first request) and ``trial``
(sliding window, 1 per 60 s, shadow). Every test creates its own clients.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from limiter import STRATEGY_NAMES, ClusterLink
from tests.cluster import quiet_window
from tests.integration.conftest import ADMIN, MAPS, Replica, Replicas, create_client
from tests.loop import LoopThread

BURST = {"name": "burst", "algorithm": "gcra", "limit": 2, "window_seconds": 60, "burst": 0}
DAILY = {
    "name": "daily",
    "algorithm": "fixed_window",
    "limit": 5,
    "window_seconds": 86400,
    "window_alignment": "first_request",
}
TRIAL = {
    "name": "trial",
    "algorithm": "sliding_window",
    "limit": 1,
    "window_seconds": 60,
    "shadow": True,
}
THREE = [BURST, DAILY, TRIAL]
POLICY_FIELD = '"burst";q=2;w=60;burst=0, "daily";q=5;w=86400'


@pytest.fixture(scope="module", params=STRATEGY_NAMES)
def api(request: pytest.FixtureRequest, replicas: Replicas) -> Iterator[Replica]:
    """One replica per strategy (the module's tests run for each), failing closed: a
    missing decision must not pass for an admission here."""
    strategy = str(request.param)
    yield replicas.start(f"policies-{strategy}", strategy=strategy, failure_mode="closed")


def _guarded(replica: Replica, client_id: str) -> httpx.Response:
    return replica.get("/example", headers={"X-Api-Id": client_id})


def _patch(replica: Replica, client_id: str, body: dict[str, Any]) -> httpx.Response:
    return replica.request("PATCH", f"/bucket/{client_id}", json=body, headers=ADMIN)


def _usage(replica: Replica, client_id: str) -> dict[str, Any]:
    response = replica.get(f"/bucket/{client_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    usage: dict[str, Any] = response.json()["usage"]
    return usage


def _by_name(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {limit["name"]: limit for limit in usage["limits"]}


def test_each_limit_denies_in_turn_with_the_headers_of_the_limit_that_denied(
    api: Replica,
) -> None:
    """The burst limit admits one request then denies (Retry-After about 30 s, RateLimit
    naming it, the shadow limit listed as one that would have denied); once a PATCH puts
    a wider gcra limit in its place (a new name: it starts empty), the daily limit, kept
    with its usage, admits its four left and denies the fifth with its own headers."""
    client = create_client(api, limits=THREE)
    assert [limit["name"] for limit in client["limits"]] == ["burst", "daily", "trial"]
    assert (client["limit"], client["window_seconds"], client["window_alignment"]) == (2, 60, None)

    first = _guarded(api, client["id"])
    assert first.status_code == 200, first.text
    assert first.headers["ratelimit-policy"] == POLICY_FIELD
    assert first.headers["ratelimit"] == '"burst";r=0;t=30'
    limit_and_remaining = (
        first.headers["x-ratelimit-limit"],
        first.headers["x-ratelimit-remaining"],
    )
    assert limit_and_remaining == ("2", "0")
    assert "x-ratelimit-shadow-denied" not in first.headers

    second = _guarded(api, client["id"])
    assert second.status_code == 429, second.text
    assert second.json() == {"error": "rate limit exceeded"}
    assert 28 <= int(second.headers["retry-after"]) <= 30
    assert second.headers["ratelimit"].startswith('"burst";r=0;t=')
    assert second.headers["x-ratelimit-shadow-denied"] == '"trial"'

    usage = _by_name(_usage(api, client["id"]))
    assert (usage["daily"]["used"], usage["daily"]["remaining"]) == (1, 4)
    assert (usage["trial"]["used"], usage["trial"]["remaining"]) == (1, 0)

    # 10 per second, 10 at once: never the closest of the two while daily has any left.
    fast = {"name": "fast", "algorithm": "gcra", "limit": 10, "window_seconds": 1, "burst": 9}
    patched = _patch(api, client["id"], {"limits": [fast, DAILY, TRIAL]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["limit"] == 10
    for remaining in (3, 2, 1, 0):
        response = _guarded(api, client["id"])
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-policy"] == (
            '"fast";q=10;w=1;burst=9, "daily";q=5;w=86400'
        )
        assert response.headers["ratelimit"].startswith(f'"daily";r={remaining};t=')
        assert response.headers["x-ratelimit-shadow-denied"] == '"trial"'
    denied = _guarded(api, client["id"])
    assert denied.status_code == 429
    assert denied.headers["x-ratelimit-limit"] == "5"
    reset = int(denied.headers["x-ratelimit-reset"])
    assert 86000 <= reset <= 86400
    assert denied.headers["ratelimit"] == f'"daily";r=0;t={reset}'
    assert int(denied.headers["retry-after"]) == reset


def test_usage_shows_every_limit_and_a_changed_window_starts_afresh(api: Replica) -> None:
    """GET /bucket/{id} shows each limit's usage (the first limit's also at the top, with
    no window start for a gcra limit); a PATCH that changes a limit's window starts that
    limit empty while the others keep theirs."""
    client = create_client(api, limits=THREE)
    assert _guarded(api, client["id"]).status_code == 200
    usage = _usage(api, client["id"])
    assert (usage["window_start"], usage["used"], usage["remaining"]) == (None, 1, 0)
    assert 29 <= usage["reset_after_seconds"] <= 30
    limits = _by_name(usage)
    assert limits["daily"]["window_start"] is not None
    assert limits["daily"]["shadow"] is False and limits["trial"]["shadow"] is True
    assert (limits["daily"]["limit"], limits["daily"]["window_seconds"]) == (5, 86400)

    shorter = {**DAILY, "window_seconds": 3600}
    patched = _patch(api, client["id"], {"limits": [BURST, shorter, TRIAL]})
    assert patched.status_code == 200, patched.text
    limits = _by_name(_usage(api, client["id"]))
    assert (limits["daily"]["used"], limits["daily"]["remaining"]) == (0, 5)
    assert limits["burst"]["remaining"] == 0  # kept: same name, algorithm and window


def test_shadow_denials_are_counted_by_limit_name(api: Replica) -> None:
    """A request the shadow limit would have denied counts in
    ratelimit_shadow_denials_total under its name and algorithm."""
    client = create_client(api, limits=[{**BURST, "limit": 100, "burst": 10}, DAILY, TRIAL])

    def shadow_denials() -> float:
        text = api.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ratelimit_shadow_denials_total" and sample.labels == {
                    "limit_name": "trial",
                    "algorithm": "sliding_window",
                }:
                    return float(sample.value)
        return 0.0

    before = shadow_denials()
    statuses = [_guarded(api, client["id"]).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    api.wait_for(lambda: shadow_denials() == before + 2, 5, "two shadow denials counted")


def test_single_form_clients_are_unchanged(api: Replica) -> None:
    """A client of the single form shows its one limit as a list of one named default,
    answers the one-limit headers, takes a single-form PATCH; the single form is a 422 on
    a client of several limits."""
    window = quiet_window()
    client = create_client(api, limit=2, window_seconds=window, window_alignment="clock")
    assert client["limits"] == [
        {
            "name": "default",
            "algorithm": "fixed_window",
            "limit": 2,
            "window_seconds": window,
            "window_alignment": "clock",
            "shadow": False,
        }
    ]
    response = _guarded(api, client["id"])
    assert response.headers["ratelimit-policy"] == f'"default";q=2;w={window}'
    assert response.headers["ratelimit"].startswith('"default";r=1;t=')
    patched = _patch(api, client["id"], {"limit": 3})
    assert patched.status_code == 200, patched.text
    assert patched.json()["limits"][0]["limit"] == 3
    assert _guarded(api, client["id"]).headers["ratelimit"].startswith('"default";r=1;t=')

    several = create_client(api, limits=THREE)
    refused = _patch(api, several["id"], {"limit": 3})
    assert refused.status_code == 422
    assert refused.json()["field"] == "limit"
    assert "send limits" in refused.json()["error"]


def test_a_record_stored_before_lists_reads_as_a_list_of_one(
    api: Replica, link: ClusterLink, loop: LoopThread
) -> None:
    """A record written in the old shape (no limits) straight into the registry's map is
    shown and decided as one fixed window named default."""
    client_id = str(uuid.uuid4())
    window = quiet_window()
    old = (
        f'{{"id":"{client_id}","name":"old-{client_id[:8]}","limit":2,'
        f'"window_seconds":{window},"created_at":"2026-01-01T00:00:00.000Z"}}'
    )

    async def store() -> None:
        clients = await link.get_map(MAPS["clients_map"])
        await clients.set(client_id, old)

    loop.run(store())
    shown = api.get(f"/bucket/{client_id}", headers=ADMIN).json()
    assert shown["window_alignment"] == "clock"
    assert [(limit["name"], limit["limit"]) for limit in shown["limits"]] == [("default", 2)]
    response = _guarded(api, client_id)
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == f'"default";q=2;w={window}'
    assert response.headers["ratelimit"].startswith('"default";r=1;t=')
    assert _usage(api, client_id)["used"] == 1
