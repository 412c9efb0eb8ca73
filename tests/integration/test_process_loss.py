"""Process loss: a replica SIGKILLed under load behind nginx costs no idempotent request
and never counts a decision twice, and a process SIGKILLed while it holds a client's lock
(lock strategy) keeps that client waiting no longer than the lock's lease."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx

from limiter.kv_window import policy_key
from stack import ROOT
from tests.cluster import NginxLog, quiet_window
from tests.conftest import Topology
from tests.integration.conftest import ADMIN, Replicas, create_client

#: Replica loss: a client of limit LIMIT is sent exactly REQUESTS > LIMIT guarded requests
#: from CONCURRENCY connections; the replica dies after KILL_AFTER answers, with budget left.
LIMIT = 200
REQUESTS = 500
CONCURRENCY = 32
KILL_AFTER = 80
HEALTH_CONCURRENCY = 12
#: Longest /health load after the last guarded answer, waiting for nginx to send a
#: /health to the dead replica (its fail_timeout is 5 s).
HEALTH_DEADLINE_SECONDS = 10.0
HEALTH_POLL_SECONDS = 0.2
#: nginx's answer (error_page 502 504 -> @no_replica) when a replica's connection failed.
NO_REPLICA = "no API replica available"
#: What a request to /example may end as while a replica dies (a fail-closed 503 may not:
#: the cluster is intact and the topology's decision timeout is 8 s).
EXPECTED_OUTCOMES = {"admitted", "over_limit", "contended", "no_replica", "connection_error"}

#: Crashed lock holder: the lock strategy with a short lease, and waits that show it.
HOLDER = Path(__file__).with_name("lock_holder.py")
LEASE_SECONDS = 5.0
LOCK_SETTINGS = {
    "strategy": "lock",
    "failure_mode": "closed",
    "lock_lease_seconds": LEASE_SECONDS,
    "decision_timeout_seconds": 1.0,
    "lock_wait_seconds": 0.5,
}
#: A decision takes at most the decision timeout; the rest is a noisy machine's slack.
MARGIN_SECONDS = 2.0
HOLDER_READY_SECONDS = 30.0


def create_topology_client(topology: Topology, limit: int, window: int) -> str:
    response = httpx.post(
        f"{topology.url}/bucket",
        json={
            "name": f"loss-{uuid.uuid4().hex}",
            "limit": limit,
            "window_seconds": window,
            "window_alignment": "clock",
        },
        headers=topology.admin,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def used(replica_url: str, topology: Topology, client_id: str) -> int:
    response = httpx.get(f"{replica_url}/bucket/{client_id}", headers=topology.admin, timeout=30)
    assert response.status_code == 200, response.text
    return int(response.json()["usage"]["used"])


def outcome(status: int, body: str) -> str:
    """What one answer of /example means."""
    if status == 200:
        return "admitted"
    if status == 429:
        return "contended" if "busy" in body else "over_limit"
    if status == 503:
        return "no_replica" if NO_REPLICA in body else "fail_closed"
    return f"status_{status}"


class NginxErrors(NginxLog):
    """nginx's ``[error]`` lines (one per failed attempt at a replica) from now on."""

    def of(self, path: str, upstream_port: int | None = None) -> list[str]:
        """The lines about requests for ``path`` (at the replica on ``upstream_port``)."""
        upstream = f"127.0.0.1:{upstream_port}{path}" if upstream_port else path
        request = f'"GET {path} '
        return [
            line
            for line in self.since().splitlines()
            if "[error]" in line and request in line and upstream in line
        ]


async def guarded_flood_with_kill(
    url: str, client_id: str, kill: Callable[[], None], health_met_the_dead: Callable[[], bool]
) -> tuple[Counter[str], Counter[str], dict[str, int]]:
    """REQUESTS guarded requests for one client and, meanwhile, /health from other
    connections; ``kill`` runs after KILL_AFTER guarded answers, blocking the loop so that
    the requests in flight stay in flight. /health goes on after the last guarded answer
    until ``health_met_the_dead()`` (nginx sent one to the dead replica: it takes a
    replica out for 5 s after 3 failures, and then tries it again), HEALTH_DEADLINE_SECONDS
    at most."""
    example: Counter[str] = Counter()
    health: Counter[str] = Counter()
    seen = {"admitted_at_kill": -1, "example_after_kill": 0, "health_after_kill": 0}
    killed = False
    finished = asyncio.Event()
    pending = iter(range(REQUESTS))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY + HEALTH_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def guarded() -> None:
            nonlocal killed
            for _ in pending:
                try:
                    async with session.get(
                        f"{url}/example", headers={"X-Api-Id": client_id}
                    ) as response:
                        kind = outcome(response.status, await response.text())
                except (aiohttp.ClientError, TimeoutError):
                    kind = "connection_error"
                example[kind] += 1
                seen["example_after_kill"] += killed
                if not killed and example.total() >= KILL_AFTER:
                    killed = True
                    seen["admitted_at_kill"] = example["admitted"]
                    kill()

        async def probe() -> None:
            while not finished.is_set():
                try:
                    async with session.get(f"{url}/health") as response:
                        await response.read()
                        kind = str(response.status)
                except (aiohttp.ClientError, TimeoutError) as error:
                    kind = type(error).__name__
                health[kind] += 1
                seen["health_after_kill"] += killed

        probes = [asyncio.create_task(probe()) for _ in range(HEALTH_CONCURRENCY)]
        try:
            await asyncio.gather(*(guarded() for _ in range(CONCURRENCY)))
            for _ in range(int(HEALTH_DEADLINE_SECONDS / HEALTH_POLL_SECONDS)):
                if health_met_the_dead():
                    break
                await asyncio.sleep(HEALTH_POLL_SECONDS)  # the /health load goes on meanwhile
        finally:
            finished.set()
            await asyncio.gather(*probes)
    return example, health, seen


def test_a_killed_replica_fails_no_health_check_and_counts_no_decision_twice(
    topology: Topology,
) -> None:
    """A replica SIGKILLed amid 500 guarded requests (limit 200) and a /health load: no
    /health request fails, at most the limit is admitted, and the cluster counted every
    admission and otherwise only requests whose answer was lost, never one twice."""
    topology.use("entry_processor")
    client_id = create_topology_client(topology, LIMIT, quiet_window())
    victim = topology.stack.replica_name(0)
    victim_port = topology.stack.replica_port(0)
    live = f"http://127.0.0.1:{topology.stack.replica_port(1)}"
    nginx = NginxErrors(topology.stack)
    started = time.monotonic()
    try:
        example, health, seen = asyncio.run(
            guarded_flood_with_kill(
                topology.url,
                client_id,
                lambda: topology.stack.kill(victim),
                lambda: bool(nginx.of("/health", victim_port)),
            )
        )
        elapsed = time.monotonic() - started
        guarded_errors = nginx.of("/example")
        health_errors = nginx.of("/health")
        # A refused connection never reached a replica: surely not counted. Any other
        # failure (reset, closed before the answer) may have been counted or not.
        refused = sum("Connection refused" in line for line in guarded_errors)
        counted = used(live, topology, client_id)
        admitted = example["admitted"]
        unanswered = example["no_replica"] + example["connection_error"] + example["fail_closed"]
        # The rest of the budget, spent on a live replica: exactly what the count says.
        more, last = 0, "none"
        with httpx.Client(base_url=live, timeout=30) as http:
            for _ in range(LIMIT - counted + 1):
                response = http.get("/example", headers={"X-Api-Id": client_id})
                last = outcome(response.status_code, response.text)
                if last != "admitted":
                    break
                more += 1
    finally:
        topology.restore_replicas()
    print(
        f"\nreplica killed after {KILL_AFTER} of {REQUESTS} guarded answers (limit {LIMIT}, "
        f"{seen['admitted_at_kill']} admitted by then): /example {dict(example)}, "
        f"{seen['example_after_kill']} answers after the kill; nginx errors on /example: "
        f"{refused} refused, {len(guarded_errors) - refused} lost in flight; counted "
        f"{counted} = {admitted} admitted + {counted - admitted} of {unanswered} unanswered; "
        f"then {more} more admitted, next {last}; /health {dict(health)} "
        f"({seen['health_after_kill']} after the kill, {len(health_errors)} met the dead "
        f"replica and were retried); {elapsed:.1f}s"
    )
    assert set(health) == {"200"}, dict(health)
    assert health_errors, "no /health request met the dead replica"
    assert set(example) <= EXPECTED_OUTCOMES, dict(example)
    assert example.total() == REQUESTS
    assert 0 <= seen["admitted_at_kill"] < LIMIT  # the replica died with budget left
    assert seen["example_after_kill"] > 0
    assert admitted <= LIMIT, "over-admission"
    assert counted <= LIMIT
    assert admitted <= counted, "an admission the cluster did not count"
    assert refused <= unanswered, (refused, unanswered, guarded_errors)
    assert counted <= admitted + unanswered - refused, "a decision counted twice"
    assert more == LIMIT - counted
    assert last == "over_limit"


def read_line(process: subprocess.Popen[str], deadline_seconds: float, log: Path) -> str:
    """The holder's next line of output, within the deadline."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], deadline_seconds)
    line = process.stdout.readline().strip() if ready else ""
    assert line, f"lock holder said nothing in {deadline_seconds}s:\n{log.read_text()[-2000:]}"
    return line


def ask(http: httpx.Client, client_id: str) -> tuple[str, httpx.Response]:
    response = http.get("/example", headers={"X-Api-Id": client_id})
    return outcome(response.status_code, response.text), response


def test_a_crashed_lock_holder_delays_a_client_no_longer_than_the_lease(
    replicas: Replicas, tmp_path: Path
) -> None:
    """A process SIGKILLed while it holds a client's lock (lock strategy, lease 5 s): a
    replica denies that client as contended meanwhile, and decides for it again within
    the lease plus 2 s of the lock being taken."""
    replica = replicas.start("lock-holder", **LOCK_SETTINGS)
    window = quiet_window()
    record = create_client(replica, limit=100, window_seconds=window, window_alignment="clock")
    client_id = record["id"]
    settings = replica.settings
    argv = [
        sys.executable,
        str(HOLDER),
        settings.hazelcast_members,
        settings.hazelcast_cluster_name,
        settings.counters_map,
        policy_key(client_id),
        str(LEASE_SECONDS),
    ]
    log = tmp_path / "lock_holder.log"
    with (
        open(log, "w") as holder_log,
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=holder_log, text=True, cwd=ROOT
        ) as holder,
        httpx.Client(base_url=replica.url, timeout=10) as http,
    ):
        try:
            line = read_line(holder, HOLDER_READY_SECONDS, log)
            assert line.startswith("locked "), line
            locked_at = float(line.split()[1])
            before, response = ask(http, client_id)
            assert before == "contended", (before, response.text)
            assert response.headers["retry-after"] == "1"
            killed_at = time.monotonic()
            holder.kill()
            holder.wait(10)
            outcomes: list[str] = []
            deadline = locked_at + LEASE_SECONDS + MARGIN_SECONDS + 5.0
            while time.monotonic() < deadline:
                kind, response = ask(http, client_id)
                outcomes.append(kind)
                if kind != "contended":
                    break
            decided_at = time.monotonic()
        finally:
            if holder.poll() is None:
                holder.kill()
    counted = replica.get(f"/bucket/{client_id}", headers=ADMIN).json()["usage"]["used"]
    since_lock = decided_at - locked_at
    since_kill = decided_at - killed_at
    released = (
        "when the member dropped the dead client"
        if since_lock < LEASE_SECONDS - 0.25
        else "at the lease's end"
    )
    print(
        f"\nlock held {killed_at - locked_at:.2f}s, then its holder killed: decided again "
        f"{since_kill:.2f}s after the kill, {since_lock:.2f}s after the lock (lease "
        f"{LEASE_SECONDS:.0f}s), released {released}; answers after the kill "
        f"{dict(Counter(outcomes))}, last {outcomes[-1]}; counted {counted}"
    )
    # Decided, and admitted: the dead holder counted nothing. (Failure mode closed: an
    # unreachable cluster is a 503, never an admission.)
    assert outcomes[-1] == "admitted", outcomes
    assert "x-ratelimit-degraded" not in response.headers
    assert set(outcomes[:-1]) <= {"contended"}, outcomes
    assert since_lock <= LEASE_SECONDS + MARGIN_SECONDS
    assert counted == 1
