"""Real replicas on the real cluster: atomic names, exact counts, propagation, metrics,
draining, and the failure policy with every member frozen and stopped (on a cluster of
its own, so that no other test depends on running before or after it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import FLUSH_SECONDS
from limiter import STRATEGY_NAMES, ClusterLink
from stack import Stack
from tests.cluster import DEFAULT_STRATEGY, MEMBERS, quiet_window
from tests.integration.conftest import ADMIN, MAPS, Replica, Replicas, create_client
from tests.loop import LoopThread

BURST = 50
LIMIT = 20
#: Decision timeout of the replicas in the failure-policy test.
FAILURE_DECISION_TIMEOUT = 1.0
ALLOWED_LABELS = {
    *("strategy", "outcome", "kind", "cause", "route", "method", "status", "le"),
    *("algorithm", "limit_name"),
    # The rate limit service's (when a replica serves it): its answers' codes, and the
    # configured domains and descriptor keys, which the configuration bounds.
    *("code", "domain", "key"),
}


async def _burst(
    url: str, method: str, path: str, count: int, **kwargs: Any
) -> list[httpx.Response]:
    """``count`` requests at once, each on its own connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.request(method, path, **kwargs) for _ in range(count)))


def burst(
    replica: Replica, method: str, path: str, count: int, **kwargs: Any
) -> list[httpx.Response]:
    return asyncio.run(_burst(replica.url, method, path, count, **kwargs))


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for response in responses:
        counted[response.status_code] = counted.get(response.status_code, 0) + 1
    return counted


def test_concurrent_creates_of_one_name_have_exactly_one_winner(
    replicas: Replicas, link: ClusterLink, loop: LoopThread
) -> None:
    """20 concurrent POST /bucket of one name over two replicas: one 201, nineteen 409, and
    the cluster holds one record of that name, the winner's."""
    first = replicas.start("names-a")
    second = replicas.start("names-b")
    name = f"contested-{uuid.uuid4().hex[:8]}"

    async def both() -> list[httpx.Response]:
        halves = await asyncio.gather(
            _burst(first.url, "POST", "/bucket", 10, json={"name": name}, headers=ADMIN),
            _burst(second.url, "POST", "/bucket", 10, json={"name": name}, headers=ADMIN),
        )
        return halves[0] + halves[1]

    responses = asyncio.run(both())
    assert statuses(responses) == {201: 1, 409: 19}
    (winner,) = [r.json() for r in responses if r.status_code == 201]

    async def stored() -> tuple[Any, list[str]]:
        names = await link.get_map(MAPS["names_map"])
        clients = await link.get_map(MAPS["clients_map"])
        records = [v for v in await clients.values() if f'"name":"{name}"' in v]
        return await names.get(name), records

    holder, records = loop.run(stored())
    assert holder == winner["id"]
    assert len(records) == 1 and winner["id"] in records[0]


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_exact_admitted_count_under_concurrent_requests(replicas: Replicas, strategy: str) -> None:
    """50 concurrent requests of one client, limit 20, on a 2-worker replica: exactly 20
    admitted and 30 limited, for each strategy; GET /bucket/{id} reports 20 used."""
    replica = replicas.start(f"exact-{strategy}", strategy=strategy, workers=2)
    client = create_client(replica, limit=LIMIT, window_seconds=quiet_window())
    responses = burst(replica, "GET", "/example", BURST, headers={"X-Api-Id": client["id"]})
    assert statuses(responses) == {200: LIMIT, 429: BURST - LIMIT}
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(LIMIT))
    usage = replica.get(f"/bucket/{client['id']}", headers=ADMIN).json()["usage"]
    assert (usage["used"], usage["remaining"]) == (LIMIT, 0)


def _limit_seen(replica: Replica, client_id: str) -> str | None:
    response = replica.get("/example", headers={"X-Api-Id": client_id})
    if response.status_code == 404:
        return None
    return response.headers["x-ratelimit-limit"]


def test_patch_and_delete_reach_another_replica_within_the_near_cache_ttl(
    replicas: Replicas,
) -> None:
    """A PATCH and a DELETE made on one replica are seen by another replica that had the
    record near-cached within RATELIMIT_REGISTRY_NEAR_CACHE_TTL_SECONDS (plus polling)."""
    writer = replicas.start("writer")
    reader = replicas.start("reader")
    ttl = reader.settings.registry_near_cache_ttl_seconds
    client = create_client(writer, limit=1000, window_seconds=quiet_window())
    for _ in range(3):  # the reader now holds the record in its near cache
        assert _limit_seen(reader, client["id"]) == "1000"

    path = f"/bucket/{client['id']}"
    patched = writer.request("PATCH", path, json={"limit": 500}, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["limit"] == 500
    patch_seconds = reader.wait_for(
        lambda: _limit_seen(reader, client["id"]) == "500", ttl + 10, "the PATCH on the reader"
    )
    assert writer.request("DELETE", path, headers=ADMIN).status_code == 204
    delete_seconds = reader.wait_for(
        lambda: _limit_seen(reader, client["id"]) is None, ttl + 10, "the DELETE on the reader"
    )
    print(
        f"\nPATCH seen by another replica after {patch_seconds:.3f}s, "
        f"DELETE after {delete_seconds:.3f}s (near-cache TTL {ttl}s)"
    )
    assert patch_seconds < ttl + 1.5
    assert delete_seconds < ttl + 1.5


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _decisions(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    return {
        labels["outcome"]: value
        for name, labels, value in samples
        if name == "ratelimit_decisions_total" and labels["strategy"] == DEFAULT_STRATEGY
    }


def _scrape(replica: Replica) -> str:
    """One scrape on a fresh connection, so that either worker may answer it."""
    return httpx.get(replica.url + "/metrics", headers={"Connection": "close"}, timeout=10).text


def _guarded_requests(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    return {
        labels["status"]: value
        for name, labels, value in samples
        if name == "ratelimit_http_requests_total"
        and labels["method"] == "GET"
        and labels["route"] == "/example"
    }


def test_metrics_sum_every_worker_and_carry_no_client_id(replicas: Replicas) -> None:
    """After traffic on a 2-worker replica, every scrape (on fresh connections, so either
    worker answers) shows the replica's total once each worker has written its tally
    (within FLUSH_SECONDS), and no label holds a client id or name."""
    replica = replicas.start("metrics", workers=2)
    clients = [create_client(replica, limit=5, window_seconds=quiet_window()) for _ in range(3)]
    for client in clients:
        responses = burst(replica, "GET", "/example", 8, headers={"X-Api-Id": client["id"]})
        assert statuses(responses) == {200: 5, 429: 3}
    assert replica.get("/example").status_code == 401

    # Every outcome is there from the start, at zero until it happens.
    totals = {
        "allowed": 15.0,
        "denied": 9.0,
        "contended": 0.0,
        "peek": 0.0,
        "fail_open": 0.0,
        "fail_closed": 0.0,
    }
    requests = {"200": 15.0, "429": 9.0, "401": 1.0}

    def complete() -> bool:
        samples = _samples(_scrape(replica))
        return _decisions(samples) == totals and _guarded_requests(samples) == requests

    replica.wait_for(complete, FLUSH_SECONDS + 5, "every worker's counts in a scrape")
    secrets = {c["id"] for c in clients} | {c["name"] for c in clients}
    for _ in range(6):
        text = _scrape(replica)
        samples = _samples(text)
        assert _decisions(samples) == totals
        assert _guarded_requests(samples) == requests
        latency = [v for n, _, v in samples if n == "ratelimit_decision_seconds_count"]
        assert latency == [24.0]
        for name, labels, _ in samples:
            assert set(labels) <= ALLOWED_LABELS, name
            assert not any(secret in value for value in labels.values() for secret in secrets)
    expected = {
        "ratelimit_decisions",
        "ratelimit_decision_seconds",
        "ratelimit_cas_attempts",
        "ratelimit_lock_wait_seconds",
        "ratelimit_http_requests",
        "ratelimit_batch_size",
        "ratelimit_contended",
        "ratelimit_deny_cache_denials",
        "ratelimit_registry_reads",
        "ratelimit_near_limit",
    }
    assert expected <= {family.name for family in text_string_to_metric_families(text)}


def test_a_worker_reads_a_client_record_once_while_its_memo_holds_it(replicas: Replicas) -> None:
    """Sequential guarded requests of two clients on a one-worker replica read each
    client's record from the cluster once (``ratelimit_registry_reads_total``)."""
    replica = replicas.start("registry-reads")
    clients = [create_client(replica, limit=100, window_seconds=quiet_window()) for _ in range(2)]

    def reads() -> float:
        text = replica.get("/metrics").text
        return sum(v for n, _, v in _samples(text) if n == "ratelimit_registry_reads_total")

    before = reads()
    for client in clients:
        for _ in range(4):
            response = replica.get("/example", headers={"X-Api-Id": client["id"]})
            assert response.status_code == 200
    assert reads() - before == 2.0


def test_sigterm_drains_before_stopping(replicas: Replicas) -> None:
    """After SIGTERM, /ready answers 503 at once while /health and the guarded route are
    still served for RATELIMIT_DRAIN_SECONDS; then the replica exits."""
    replica = replicas.start("drain", drain_seconds=8.0)
    client = create_client(replica)
    replica.terminate()
    replica.wait_for(lambda: replica.ready_status() == 503, 2.0, "/ready = 503 after SIGTERM")
    assert replica.get("/health").status_code == 200
    assert replica.get("/example", headers={"X-Api-Id": client["id"]}).status_code == 200
    replica.wait_exit(8.0 + 15.0)


def _timed(replica: Replica, client_id: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = replica.get("/example", headers={"X-Api-Id": client_id})
    return time.monotonic() - started, response


def _decides(replica: Replica, client_id: str) -> bool:
    try:
        response = replica.get("/example", headers={"X-Api-Id": client_id}, timeout=5)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and "x-ratelimit-degraded" not in response.headers


def _members_paused(cluster: Stack) -> contextlib.AbstractContextManager[None]:
    """SIGSTOP every member of the test cluster (alive, but answering nothing), SIGCONT after."""

    @contextlib.contextmanager
    def paused() -> Iterator[None]:
        found = [cluster.pid_of(cluster.member_name(i)) for i in range(MEMBERS)]
        pids = [pid for pid in found if pid is not None]
        assert len(pids) == MEMBERS
        try:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    return paused()


def _worst_degraded_response(open_: Replica, closed: Replica, client_id: str) -> float:
    """Five requests to each replica: fail open answers 200 marked, fail closed 503."""
    timings: list[float] = []
    for _ in range(5):
        elapsed, response = _timed(open_, client_id)
        timings.append(elapsed)
        assert response.status_code == 200
        assert response.json() == {"message": "Hello World"}
        assert response.headers["x-ratelimit-degraded"] in ("unavailable", "timeout")
        elapsed, response = _timed(closed, client_id)
        timings.append(elapsed)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-ratelimit-degraded"] in ("unavailable", "timeout")
        assert isinstance(response.json()["error"], str)
    return max(timings)


@pytest.fixture
def doomed_cluster(cluster: Stack) -> Iterator[Stack]:
    """A cluster of its own for a test that freezes and stops every member, on ports 40
    above the session's; stopped at the end whatever happened."""
    layout = cluster.layout.shifted(40, database_port=cluster.layout.database_port)
    own = cluster.beside("doomed", layout)
    own.start_members(MEMBERS)
    try:
        yield own
    finally:
        own.stop()


def test_failure_policy_with_every_member_stopped(
    replicas: Replicas, doomed_cluster: Stack
) -> None:
    """Members frozen (SIGSTOP), then stopped: fail open answers 200 marked
    X-RateLimit-Degraded, fail closed 503 with Retry-After, always within the decision
    timeout + 1 s; /ready is 503 once they are gone; a replica started meanwhile waits;
    once the members are back, all three replicas decide again."""
    cluster = doomed_cluster
    overrides = {
        "hazelcast_members": ",".join(cluster.member_addresses(MEMBERS)),
        "hazelcast_cluster_name": cluster.cluster_name,
        "decision_timeout_seconds": FAILURE_DECISION_TIMEOUT,
        "lock_wait_seconds": FAILURE_DECISION_TIMEOUT / 2,
        "drain_seconds": 0.2,
    }
    open_ = replicas.start("fail-open", failure_mode="open", **overrides)
    closed = replicas.start("fail-closed", failure_mode="closed", **overrides)
    client = create_client(open_, limit=1000, window_seconds=quiet_window())
    assert _decides(open_, client["id"]) and _decides(closed, client["id"])

    with _members_paused(cluster):
        frozen_worst = _worst_degraded_response(open_, closed, client["id"])
    print(f"\nworst response time with every member frozen: {frozen_worst:.3f}s")
    assert frozen_worst < FAILURE_DECISION_TIMEOUT + 1.0
    open_.wait_for(lambda: _decides(open_, client["id"]), 60, "decisions after SIGCONT")

    cluster.stop([cluster.member_name(i) for i in range(MEMBERS)])
    try:
        for replica in (open_, closed):
            replica.wait_for(lambda r=replica: r.ready_status() == 503, 30, "/ready = 503")
        stopped_worst = _worst_degraded_response(open_, closed, client["id"])
        print(f"worst response time with every member stopped: {stopped_worst:.3f}s")
        assert stopped_worst < FAILURE_DECISION_TIMEOUT + 1.0

        metrics = _samples(open_.get("/metrics").text)
        assert any(
            n == "ratelimit_decisions_total" and labels["outcome"] == "fail_open" and v >= 5
            for n, labels, v in metrics
        )
        assert any(n == "ratelimit_backend_errors_total" and v >= 5 for n, _, v in metrics)

        late = replicas.start("late", wait=False, failure_mode="closed", **overrides)
        late.wait_listening()
        assert late.ready_status() == 503
        assert late.get("/health").status_code == 200
        assert late.get("/example", headers={"X-Api-Id": client["id"]}).status_code == 503
    finally:
        restart_seconds = cluster.start_members(MEMBERS)

    # Every member was stopped: writes work again once the registry is loaded back.
    started = time.monotonic()
    recreated: dict[str, Any] = {}

    def registered() -> bool:
        response = open_.request(
            "POST", "/bucket", json={"name": f"back-{uuid.uuid4().hex[:8]}"}, headers=ADMIN
        )
        if response.status_code == 201:
            recreated.update(response.json())
        return bool(recreated)

    open_.wait_for(registered, 120, "POST /bucket to work again")
    for replica in (open_, closed, late):
        replica.wait_for(lambda r=replica: r.ready_status() == 200, 120, "/ready = 200")
        replica.wait_for(lambda r=replica: _decides(r, recreated["id"]), 120, "a real decision")
    print(
        f"members restarted in {restart_seconds:.1f}s; replicas deciding again "
        f"{time.monotonic() - started:.1f}s later"
    )
