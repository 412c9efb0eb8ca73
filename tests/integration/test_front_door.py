"""The front door under load: nginx and the 3 replicas behind it take hundreds, then a
thousand, concurrent clients (``wrk``) without an error, without marking a healthy
replica dead, and skip a replica that is really gone."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Topology

WRK = shutil.which("wrk")
pytestmark = pytest.mark.skipif(
    WRK is None, reason="wrk is not installed (apt-get install wrk); these tests drive load"
)

THREADS = 2
SECONDS = 3
#: wrk's own per-request timeout: nginx's proxy_read_timeout, so only a stuck request counts.
TIMEOUT = "10s"
SOCKET_ERROR_KINDS = ("connect", "read", "write", "timeout")
#: Counts every status the threads saw and prints them at the end ("status 200 1234").
STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
    for _, thread in ipairs(threads) do
        for status, count in pairs(thread:get("statuses")) do
            io.write(string.format("status %d %d\\n", status, count))
        end
    end
end
"""


@dataclasses.dataclass
class Load:
    """What one wrk run reported."""

    requests: int
    rate: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    statuses: dict[int, int]
    output: str

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.rate:.0f}/s, non-2xx/3xx {self.non_2xx_3xx}, "
            f"socket errors {self.socket_errors}, statuses {self.statuses or '-'}"
        )


def wrk(
    url: str, connections: int, *, headers: dict[str, str] | None = None, script: Path | None = None
) -> Load:
    assert WRK is not None
    argv = [WRK, f"-t{THREADS}", f"-c{connections}", f"-d{SECONDS}s", "--timeout", TIMEOUT]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    run = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=SECONDS + 60, check=False
    )
    assert run.returncode == 0, f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    return parse(run.stdout)


def parse(output: str) -> Load:
    """Reads wrk's summary; the socket-error and non-2xx lines appear only when non-zero."""
    requests = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    assert requests and rate, f"unexpected wrk output:\n{output}"
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    statuses = re.findall(r"^status (\d+) (\d+)$", output, re.MULTILINE)
    totals: dict[int, int] = {}
    for status, count in statuses:
        totals[int(status)] = totals.get(int(status), 0) + int(count)
    return Load(
        requests=int(requests.group(1)),
        rate=float(rate.group(1)),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(SOCKET_ERROR_KINDS, (int(n) for n in errors.groups()), strict=True))
        if errors
        else dict.fromkeys(SOCKET_ERROR_KINDS, 0),
        statuses=totals,
        output=output,
    )


class NginxLog:
    """nginx's error log from the moment this is made on."""

    def __init__(self, topology: Topology) -> None:
        self.path = topology.stack.log_path("nginx")
        self.start = self.path.stat().st_size

    def since(self) -> str:
        with open(self.path, "rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")


def assert_clean(load: Load, what: str) -> None:
    print(f"\n{what}: {load.summary()}")
    assert load.requests > 0, load.output
    assert load.socket_errors == dict.fromkeys(SOCKET_ERROR_KINDS, 0), load.output
    assert load.non_2xx_3xx == 0, load.output


@pytest.mark.parametrize("connections", [300, 1000])
def test_health_through_nginx_under_load_never_fails(connections: int, topology: Topology) -> None:
    """Hundreds and a thousand concurrent clients on /health: every answer 2xx, no socket
    error, and nginx marks no replica as failed."""
    log = NginxLog(topology)
    load = wrk(f"{topology.url}/health", connections)
    assert_clean(load, f"/health, {connections} connections")
    errors = log.since()
    assert "no live upstreams" not in errors, errors[-2000:]
    assert "temporarily disabled" not in errors, errors[-2000:]


def test_a_killed_replica_is_skipped_under_load(topology: Topology) -> None:
    """With one replica killed, 300 concurrent clients on /health all get 2xx: nginx skips
    the replica that refuses connections."""
    log = NginxLog(topology)
    topology.stack.kill(topology.stack.replica_name(0))
    try:
        load = wrk(f"{topology.url}/health", 300)
        assert_clean(load, "/health, 300 connections, one replica killed")
        # The dead replica was tried (and refused) rather than never in the rotation.
        assert "Connection refused" in log.since()
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


def test_example_under_load_answers_only_decisions(
    topology: Topology, busy_client: str, tmp_path: Path
) -> None:
    """300 concurrent clients on /example: no socket error, and every answer is a decision
    (200 or 429), never an nginx 502/503/504."""
    topology.use("entry_processor")
    script = tmp_path / "statuses.lua"
    script.write_text(STATUS_SCRIPT)
    load = wrk(f"{topology.url}/example", 300, headers={"X-Api-Id": busy_client}, script=script)
    print(f"\n/example, 300 connections: {load.summary()}")
    assert load.requests > 0, load.output
    assert load.socket_errors == dict.fromkeys(SOCKET_ERROR_KINDS, 0), load.output
    assert load.statuses, load.output
    assert set(load.statuses) <= {200, 429}, load.statuses
