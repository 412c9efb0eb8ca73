"""Session fixtures: a real 3-member Hazelcast cluster, its PostgreSQL, and a client on it.

The cluster is started by the same runner as ``make up`` (ports 5801-5803, PostgreSQL on
20841, its own cluster name and run folder, so a developer's stack is left alone),
awaited by readiness, and stopped at the end of the session whatever happened. Each
session starts from an empty registry table (the members create it again).
``RATELIMIT_TEST_KEEP_CLUSTER=1`` leaves it running between local runs.

The topology's replicas serve Envoy's rate limit service too, on the layout's gRPC ports,
with the rules of ``tests/rls/envoy/`` copied into the run folder; the ``envoy`` fixture
puts a real Envoy in front of the demo app, asking them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Verbosity, settings

from api.settings import Settings
from limiter import ClusterLink, connect
from stack import Stack
from tests.cluster import DEFAULT_STRATEGY, MEMBERS, settings_env, test_settings, test_stack
from tests.loop import LoopThread
from tests.stall import restore_members, stall_cluster, thaw_all

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    verbosity=Verbosity.normal,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TESTS = Path(__file__).parent
#: The rate limit service's rules for the tests through Envoy; the replicas read a copy.
RLS_CONFIG = TESTS / "rls" / "envoy"
#: How long the session's Envoy waits for the service: far above Envoy's 20 ms default.
#: The tests count exactly what reaches the app under floods of 300 connections on two
#: cores, where a call can take longer than 20 ms; at the default such a request would
#: be let through (failure_mode_deny false), and a count be off for the machine's load
#: rather than for a fault. The failure-mode tests use the default on Envoys of their own.
ENVOY_TIMEOUT_SECONDS = 5.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test by its folder: unit, property or integration."""
    for item in items:
        folder = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        if folder in ("unit", "property", "integration"):
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def registry_database() -> Iterator[Stack]:
    """The session's PostgreSQL, emptied of an earlier session's registry: the session's
    members load from it, and so do the stacks of tests that bring their own members."""
    stack = test_stack()
    try:
        stack.start_database()
        stack.sql("DROP TABLE IF EXISTS ratelimit_registry")
        yield stack
    finally:
        if os.environ.get("RATELIMIT_TEST_KEEP_CLUSTER") != "1":
            stack.stop_database()


@pytest.fixture(scope="session")
def cluster(registry_database: Stack) -> Iterator[Stack]:
    stack = registry_database
    try:
        stack.start_members(MEMBERS)
        yield stack
    finally:
        if os.environ.get("RATELIMIT_TEST_KEEP_CLUSTER") != "1":
            stack.stop()


@pytest.fixture(scope="session")
def spare_members(cluster: Stack) -> Iterator[Stack]:
    """Three members beside the session's, with the fault hook on and no registry
    (tests/stall.py), for the tests that stall, freeze or kill members
    (test_frozen_member, test_retried_call, test_shard_migration): started once for all
    of them (a start of three members is about 10 s), each test using maps of its own;
    stopped at the end of the session."""
    with stall_cluster() as spare:
        yield spare


@pytest.fixture
def all_spare_members(spare_members: Stack) -> Stack:
    """The spare members, all three answering: one an earlier test killed is started
    again, one it froze is thawed."""
    thaw_all(spare_members)
    restore_members(spare_members)
    spare_members.wait_for_members(MEMBERS, 60)
    return spare_members


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return test_settings()


@pytest.fixture(scope="session")
def link(cluster: Stack, loop: LoopThread, base_settings: Settings) -> Iterator[ClusterLink]:
    connected = loop.run(connect(base_settings))
    yield connected
    loop.run(connected.close())


@pytest.fixture
def counters(link: ClusterLink, loop: LoopThread) -> Iterator[Any]:
    """A fresh counter map for one test (it still matches hazelcast.xml's counter config)."""
    proxy = loop.run(link.get_map(f"ratelimit.counters.{uuid.uuid4().hex}"))
    yield proxy
    loop.run(proxy.destroy())


class Topology:
    """The whole local topology on the test cluster: 3 replicas behind real nginx, a demo
    upstream for gateway mode, and Prometheus scraping the replicas.

    ``use(strategy)`` restarts the replicas with another ``RATELIMIT_STRATEGY``; the
    clients live in the cluster, so they survive the restart.

    The replicas' rate limit service reads ``rls_config_dir``, a fresh copy of
    ``tests/rls/envoy/`` under the run folder that a test may rewrite (the service reads
    it again when a file changes).
    """

    ADMIN_TOKEN = "topology-admin-token"
    REPLICAS = 3

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.strategy: str | None = None
        self.url = f"http://127.0.0.1:{stack.layout.nginx_port}"
        self.prometheus_url = f"http://127.0.0.1:{stack.layout.prometheus_port}"
        run = uuid.uuid4().hex[:8]
        # Exactness is the point here: no failing open, and waits far above any hiccup.
        self.settings = test_settings(
            admin_token=self.ADMIN_TOKEN,
            failure_mode="closed",
            counters_map=f"ratelimit.counters.topology-{run}",
            clients_map=f"ratelimit.clients.topology-{run}",
            names_map=f"ratelimit.names.topology-{run}",
            drain_seconds=0.5,
            # Below nginx's proxy_read_timeout (10 s), so a slow decision is an error
            # from the API, never an nginx 504 (or a retried, double-counted request).
            decision_timeout_seconds=8.0,
            lock_wait_seconds=6.0,
        )

        self.base_settings = self.settings
        self.rls_config_dir = stack.run_dir / "rls-config"
        shutil.rmtree(self.rls_config_dir, ignore_errors=True)
        shutil.copytree(RLS_CONFIG, self.rls_config_dir)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ADMIN_TOKEN}"}

    def use(self, strategy: str, **overrides: Any) -> None:
        """Replicas with ``strategy`` and the base settings changed by ``overrides``;
        restarted only when either differs from what runs."""
        settings = dataclasses.replace(self.base_settings, **overrides)
        if strategy == self.strategy and settings == self.settings:
            return
        self.stack.stop([self.stack.replica_name(i) for i in range(self.REPLICAS)])
        self.strategy = strategy
        self.settings = settings
        self.restore_replicas()

    def restore_replicas(self) -> None:
        """Starts whichever replicas are not running (after a test killed one)."""
        env = settings_env(self.settings) | {
            "RATELIMIT_STRATEGY": str(self.strategy),
            "RATELIMIT_RLS_CONFIG_DIR": str(self.rls_config_dir),
        }
        self.stack.start_replicas(self.REPLICAS, env)


@pytest.fixture(scope="session")
def topology(cluster: Stack) -> Iterator[Topology]:
    topology = Topology(cluster)
    topology.use(DEFAULT_STRATEGY)
    cluster.start_parts(
        [
            cluster.demo_app_part(),
            cluster.nginx_part(Topology.REPLICAS),
            cluster.prometheus_part(Topology.REPLICAS),
        ]
    )
    yield topology
    cluster.stop(
        [
            "nginx",
            "prometheus",
            "demo-app",
            *(cluster.replica_name(i) for i in range(Topology.REPLICAS)),
        ]
    )


@dataclasses.dataclass(frozen=True)
class Envoy:
    """An Envoy of the session's stack: its listener (the demo app behind the rate limit
    filter) and its admin interface (``/stats``, ``/ready``)."""

    name: str
    url: str
    admin_url: str


@pytest.fixture(scope="module")
def envoy(topology: Topology) -> Iterator[Envoy]:
    """Envoy on the session layout's ports in front of the demo app, asking the
    topology's replicas (their gRPC ports); started when a module first needs it (a
    fraction of a second) and stopped at its end: a test's own cluster may sit 60 ports
    above the session's (tests/member_loss.py), where Envoy's ports would be its
    replicas' and nginx's."""
    stack = topology.stack
    part = stack.envoy_part(Topology.REPLICAS, timeout_seconds=ENVOY_TIMEOUT_SECONDS)
    stack.start_parts([part])
    try:
        yield Envoy(
            part.name,
            f"http://127.0.0.1:{stack.layout.envoy_port}",
            f"http://127.0.0.1:{stack.layout.envoy_admin_port}",
        )
    finally:
        stack.stop([part.name])
