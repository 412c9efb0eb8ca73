"""The front door under load: nginx and the 3 replicas behind it take hundreds, then a
thousand, concurrent clients (``wrk``) without an error, without marking a healthy
replica dead, and skip a replica that is really gone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.load.wrk import WRK, WrkRun, run_wrk
from tests.cluster import NginxLog
from tests.conftest import Topology

pytestmark = pytest.mark.skipif(
    WRK is None, reason="wrk is not installed (apt-get install wrk); these tests drive load"
)

SECONDS = 3


def assert_clean(load: WrkRun, what: str) -> None:
    print(f"\n{what}: {load.summary()}")
    assert load.requests > 0, load.output
    assert load.socket_error_count == 0, load.output
    assert set(load.statuses) == {200}, load.output


@pytest.mark.parametrize("connections", [300, 1000])
def test_health_through_nginx_under_load_never_fails(connections: int, topology: Topology) -> None:
    """Hundreds and a thousand concurrent clients on /health: every answer 2xx, no socket
    error, and nginx marks no replica as failed."""
    log = NginxLog(topology.stack)
    load = run_wrk(f"{topology.url}/health", connections, SECONDS)
    assert_clean(load, f"/health, {connections} connections")
    errors = log.since()
    assert "no live upstreams" not in errors, errors[-2000:]
    assert "temporarily disabled" not in errors, errors[-2000:]


def test_a_killed_replica_is_skipped_under_load(topology: Topology) -> None:
    """With one replica killed, 300 concurrent clients on /health all get 2xx: nginx skips
    the replica whose connections fail."""
    log = NginxLog(topology.stack)
    topology.stack.kill(topology.stack.replica_name(0))
    try:
        load = run_wrk(f"{topology.url}/health", 300, SECONDS)
        assert_clean(load, "/health, 300 connections, one replica killed")
        # The dead replica was tried (refused, or a kept-alive connection to it reset)
        # rather than never in the rotation.
        dead = f'upstream: "http://127.0.0.1:{topology.stack.replica_port(0)}/'
        failures = [
            line
            for line in log.since().splitlines()
            if dead in line and ("Connection refused" in line or "Connection reset" in line)
        ]
        assert failures, log.since()
    finally:
        topology.restore_replicas()


@pytest.fixture
def busy_client(topology: Topology) -> Iterator[str]:
    """A client whose limit no load test reaches; deleted afterwards."""
    with httpx.Client(base_url=topology.url, timeout=30) as http:
        created = http.post(
            "/bucket",
            json={"name": f"wrk-{uuid.uuid4().hex}", "limit": 10**9, "window_seconds": 3600},
            headers=topology.admin,
        )
        assert created.status_code == 201, created.text
        client_id: str = created.json()["id"]
        yield client_id
        http.delete(f"/bucket/{client_id}", headers=topology.admin)


def test_example_under_load_answers_only_decisions(topology: Topology, busy_client: str) -> None:
    """300 concurrent clients on /example: no socket error, and every answer is a decision
    (200 or 429), never an nginx 502/503/504."""
    topology.use("entry_processor")
    load = run_wrk(f"{topology.url}/example", 300, SECONDS, headers={"X-Api-Id": busy_client})
    print(f"\n/example, 300 connections: {load.summary()}")
    assert load.requests > 0, load.output
    assert load.socket_error_count == 0, load.output
    assert load.statuses, load.output
    assert set(load.statuses) <= {200, 429}, load.statuses
