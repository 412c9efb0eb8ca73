"""The test cluster's coordinates, shared by the fixtures and the worker processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

from api.settings import Settings
from stack import ROOT, Layout, MemberSettings, Stack

MEMBERS = 3
#: Another base port (RATELIMIT_TEST_BASE_PORT) runs a second suite beside the first.
BASE_PORT = int(os.environ.get("RATELIMIT_TEST_BASE_PORT", "5801"))
CLUSTER_NAME = f"ratelimit-test-{BASE_PORT}"
RUN_DIR = ROOT / ".run" / f"test-{BASE_PORT}"
#: The strategy of the replicas of tests that do not choose one (RATELIMIT_TEST_STRATEGY;
#: the settings' default otherwise): a suite can run on another strategy while one is
#: being changed.
DEFAULT_STRATEGY = os.environ.get("RATELIMIT_TEST_STRATEGY", Settings().strategy)


def test_stack() -> Stack:
    """The suite's stack; its HTTP ports sit 15000 above the members' (20801, 20811, ...),
    and its PostgreSQL (the registry's durable copy, data under its run folder) 15040."""
    return Stack(Layout.at(BASE_PORT), RUN_DIR, CLUSTER_NAME, MemberSettings(count=MEMBERS))


@contextlib.contextmanager
def own_members(session: Stack, name: str, offset: int) -> Iterator[Stack]:
    """Three members of a test module's own, ``offset`` ports above the session's, on the
    session's database; stopped at the end whatever happened."""
    layout = session.layout.shifted(offset, database_port=session.layout.database_port)
    own = session.beside(name, layout)
    own.start_members(MEMBERS)
    try:
        yield own
    finally:
        own.stop()


def settings_env(settings: Settings) -> dict[str, str]:
    """Every field of ``settings`` as the variable ``Settings.from_env`` reads back."""
    return {
        f"RATELIMIT_{field.name.upper()}": str(getattr(settings, field.name))
        for field in dataclasses.fields(settings)
    }


def test_settings(**overrides: Any) -> Settings:
    """Settings for the test cluster: generous waits, so that only a real fault fails."""
    values: dict[str, Any] = {
        "hazelcast_members": ",".join(test_stack().member_addresses(MEMBERS)),
        "hazelcast_cluster_name": CLUSTER_NAME,
        "strategy": DEFAULT_STRATEGY,
        "decision_timeout_seconds": 20.0,
        "lock_wait_seconds": 15.0,
        "lock_lease_seconds": 30.0,
        "cas_max_attempts": 400,
        # Injected clocks in the tests may sit near a window's end: keep keys alive.
        "expiry_grace_seconds": 120.0,
    }
    values.update(overrides)
    return Settings(**values)


def quiet_window(margin_seconds: int = 120) -> int:
    """A window length whose current window has at least ``margin_seconds`` left, so a
    burst cannot straddle a window edge (which would legitimately admit more)."""
    now = time.time()
    for window in (3600, 3660, 3720, 3780, 3840):
        if window - now % window > margin_seconds:
            return window
    raise AssertionError("unreachable: the candidate windows' edges are spread apart")


class NginxLog:
    """nginx's error log from the moment this is made on."""

    def __init__(self, stack: Stack) -> None:
        self.path = stack.log_path("nginx")
        self.start = self.path.stat().st_size

    def since(self) -> str:
        with open(self.path, "rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")
