"""Real API replicas for the API tests: ``python -m api`` subprocesses on the test cluster.

Each replica gets its whole configuration as ``RATELIMIT_*`` variables built from
:func:`tests.cluster.test_settings`, a free loopback port from 18081 up, the admin
token below, and the map names of this test run (fresh per session, so runs never see
each other's clients). A replica is awaited by polling ``/ready`` with a deadline, and
stopped with SIGTERM (SIGKILL if it outlives its grace) when its fixture ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stack.runner import LOOPBACK, ROOT, Stack, port_is_free
from tests.cluster import RUN_DIR, settings_env, test_settings, test_stack

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FIRST_PORT = 18081
READY_DEADLINE_SECONDS = 60.0
STOP_GRACE_SECONDS = 20.0
#: One suffix per test session: map names that no other run uses.
RUN_ID = uuid.uuid4().hex[:12]
MAPS = {
    "counters_map": f"ratelimit.counters.api-{RUN_ID}",
    "clients_map": f"ratelimit.clients.api-{RUN_ID}",
    "names_map": f"ratelimit.names.api-{RUN_ID}",
}


def free_port(start: int = FIRST_PORT, span: int = 200) -> int:
    for port in range(start, start + span):
        if port not in Replica.ports_in_use and port_is_free(port):
            return port
    raise RuntimeError(f"no free loopback port in {start}..{start + span - 1}")


class Replica:
    """One ``python -m api`` process and an HTTP client for it."""

    ports_in_use: set[int] = set()  # noqa: RUF012 - shared on purpose: one registry of ports

    def __init__(self, name: str, **overrides: Any) -> None:
        self.name = name
        self.port = free_port()
        Replica.ports_in_use.add(self.port)
        values: dict[str, Any] = {
            **MAPS,
            "host": LOOPBACK,
            "port": self.port,
            "admin_token": ADMIN_TOKEN,
            "drain_seconds": 0.2,
            "workers": 1,
        }
        values.update(overrides)
        self.settings = test_settings(**values)
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = RUN_DIR / "logs" / f"api-{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMIT_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(settings_env(self.settings))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # So that `make down` stops it should this test run be killed.
        test_stack().adopt(self.part_name, self.process.pid)
        return self

    @property
    def part_name(self) -> str:
        return f"test-api-{self.name}-{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 30)
        return httpx.request(method, self.url + path, **kwargs)

    def ready_status(self) -> int | None:
        try:
            return self.get("/ready", timeout=2).status_code
        except httpx.TransportError:
            return None

    def wait_ready(self, deadline_seconds: float = READY_DEADLINE_SECONDS) -> float:
        """Polls /ready until 200; returns the seconds it took."""
        return self.wait_for(lambda: self.ready_status() == 200, deadline_seconds, "/ready = 200")

    def wait_listening(self, deadline_seconds: float = READY_DEADLINE_SECONDS) -> float:
        return self.wait_for(
            lambda: self.ready_status() is not None, deadline_seconds, "the replica to listen"
        )

    def wait_for(self, condition: Any, deadline_seconds: float, what: str) -> float:
        started = time.monotonic()
        deadline = started + deadline_seconds
        while True:
            if not self.alive():
                raise AssertionError(f"replica {self.name} exited:\n{self.log_tail()}")
            if condition():
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"replica {self.name}: no {what} within {deadline_seconds}s:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a replica (the replica then drains)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                # The replica's own process group: its workers, nobody else.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        test_stack().forget(self.part_name)
        Replica.ports_in_use.discard(self.port)


class Replicas:
    """Starts replicas on demand and stops every one of them at the end."""

    def __init__(self) -> None:
        self.started: list[Replica] = []

    def start(self, name: str, *, wait: bool = True, **overrides: Any) -> Replica:
        replica = Replica(name, **overrides).start()
        self.started.append(replica)
        if wait:
            replica.wait_ready()
        return replica

    def stop_all(self) -> None:
        for replica in self.started:
            replica.stop()


@pytest.fixture(scope="module")
def replicas(cluster: Stack) -> Iterator[Replicas]:
    """Replicas of one test module, on the session's cluster; all stopped at its end."""
    started = Replicas()
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def replica(replicas: Replicas) -> Replica:
    """One replica with the default strategy (entry_processor) and failure mode (open)."""
    return replicas.start("main")


def create_client(replica: Replica, name: str | None = None, **fields: Any) -> dict[str, Any]:
    """Creates a client through the API and returns its record."""
    body = {"name": name or f"client-{uuid.uuid4().hex[:10]}", **fields}
    response = replica.request("POST", "/bucket", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record
