"""Session fixtures: a real 3-member Hazelcast cluster and a client on it.

The cluster is started by the same runner as ``make up`` (ports 5801-5803, its own
cluster name and run folder, so a developer's stack is left alone), awaited by
readiness, and stopped at the end of the session whatever happened.
``RATELIMIT_TEST_KEEP_CLUSTER=1`` leaves it running between local runs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Verbosity, settings

from limiter import ClusterLink, Settings, connect
from stack.runner import Stack
from tests.cluster import MEMBERS, test_settings, test_stack
from tests.loop import LoopThread

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test by its folder: unit, property or integration."""
    for item in items:
        folder = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        if folder in ("unit", "property", "integration"):
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Stack]:
    stack = test_stack()
    stack.start_members(MEMBERS)
    try:
        yield stack
    finally:
        if os.environ.get("RATELIMIT_TEST_KEEP_CLUSTER") != "1":
            stack.stop()


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
