"""Real API replicas for the API tests: ``python -m api`` parts of the session's stack.

Each replica gets its whole configuration as ``RATELIMIT_*`` variables built from
:func:`tests.cluster.test_settings` (nothing inherited from the shell), a free loopback
port 100 above the stack's replicas, the admin token below, and the map names of this
test run (fresh per session, so runs never see each other's clients). Their gRPC rate
limit service is off (``RATELIMIT_GRPC_PORT`` 0, ``Stack.api_part``'s default): only the
topology's replicas serve it, each on its own port. The stack spawns,
awaits, signals and stops them like any other part, so ``make down`` reaches them too
should a run be killed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from stack import LOOPBACK, Stack, port_is_free
from tests.cluster import settings_env, test_settings

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Test replicas' ports start this far above the stack's own replicas (and its nginx,
#: Prometheus and demo app), so two suites on different base ports never pick the same.
PORT_OFFSET = 100
PORT_SPAN = 200
READY_DEADLINE_SECONDS = 60.0
#: One suffix per test session: map names that no other run uses.
RUN_ID = uuid.uuid4().hex[:12]
MAPS = {
    "counters_map": f"ratelimit.counters.api-{RUN_ID}",
    "clients_map": f"ratelimit.clients.api-{RUN_ID}",
    "names_map": f"ratelimit.names.api-{RUN_ID}",
}


class Replica:
    """One ``python -m api`` part of the stack, and an HTTP client for it."""

    def __init__(self, stack: Stack, name: str, port: int, **overrides: Any) -> None:
        #: Whether the replica serves the rate limit service (only when a test gives it
        #: a ``grpc_port``: the default port would be shared by every replica).
        self.grpc = "grpc_port" in overrides
        self.stack = stack
        self.name = name
        self.port = port
        values: dict[str, Any] = {
            **MAPS,
            "host": LOOPBACK,
            "port": port,
            "admin_token": ADMIN_TOKEN,
            "drain_seconds": 0.2,
            "workers": 1,
        }
        values.update(overrides)
        self.settings = test_settings(**values)
        self.url = f"http://{LOOPBACK}:{port}"
        self.part_name = f"test-api-{name}-{port}"

    def start(self, wait: bool = True) -> Replica:
        """Starts the replica; with ``wait``, returns once its /ready answers 200."""
        part = self.stack.api_part(
            self.part_name,
            self.port,
            settings_env(self.settings),
            isolated=True,
            grpc_port=self.settings.grpc_port if self.grpc else 0,
        )
        self.stack.start_parts([part], READY_DEADLINE_SECONDS, wait=wait)
        return self

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
        """For a replica started without waiting: polls /ready until 200."""
        return self.wait_for(lambda: self.ready_status() == 200, deadline_seconds, "/ready = 200")

    def wait_listening(self, deadline_seconds: float = READY_DEADLINE_SECONDS) -> float:
        return self.wait_for(
            lambda: self.ready_status() is not None, deadline_seconds, "the replica to listen"
        )

    def wait_for(self, condition: Callable[[], bool], deadline_seconds: float, what: str) -> float:
        """Polls ``condition`` until it holds; fails if the replica exits meanwhile.
        Returns the seconds it took."""
        return self.stack.wait_until(
            condition, deadline_seconds, f"replica {self.name}: {what}", [self.part_name]
        )

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a replica (the replica then drains)."""
        self.stack.terminate(self.part_name)

    def wait_exit(self, deadline_seconds: float) -> None:
        self.stack.wait_for_exit(self.part_name, deadline_seconds)


class Replicas:
    """Starts replicas on demand on the stack and stops every one of them at the end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: list[Replica] = []
        #: Ports handed out for something else than a replica's HTTP (a gRPC listener).
        self.reserved: set[int] = set()

    def free_port(self) -> int:
        """A port nothing listens on and no replica of ours was given (a replica just
        started may not listen yet)."""
        start = self.stack.layout.api_port + PORT_OFFSET
        given = {replica.port for replica in self.started} | self.reserved
        for port in range(start, start + PORT_SPAN):
            if port not in given and port_is_free(port):
                return port
        raise RuntimeError(f"no free loopback port in {start}..{start + PORT_SPAN - 1}")

    def reserve_port(self) -> int:
        """A free port from the replicas' range that no replica will be given (for a
        replica's second listener)."""
        port = self.free_port()
        self.reserved.add(port)
        return port

    def start(self, name: str, *, wait: bool = True, **overrides: Any) -> Replica:
        replica = Replica(self.stack, name, self.free_port(), **overrides)
        self.started.append(replica)
        return replica.start(wait)

    def stop_all(self) -> None:
        self.stack.stop([replica.part_name for replica in self.started])


@pytest.fixture(scope="module")
def replicas(cluster: Stack) -> Iterator[Replicas]:
    """Replicas of one test module, on the session's cluster; all stopped at its end."""
    started = Replicas(cluster)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def replica(replicas: Replicas) -> Replica:
    """One replica with the default strategy (entry_processor, or RATELIMIT_TEST_STRATEGY)
    and failure mode (open)."""
    return replicas.start("main")


def create_client(replica: Replica, name: str | None = None, **fields: Any) -> dict[str, Any]:
    """Creates a client through the API and returns its record."""
    body = {"name": name or f"client-{uuid.uuid4().hex[:10]}", **fields}
    response = replica.request("POST", "/bucket", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record
