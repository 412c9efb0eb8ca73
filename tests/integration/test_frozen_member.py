"""One member frozen (SIGSTOP: its connections stay open and answer nothing, as a hung
JVM or a host cut off without a reset) while two answer, on the session's spare members
(tests/conftest.py), decided in process.

A decision stuck on the frozen owner must be a contended denial, never the failure mode:
the failure mode is for a cluster that does not answer at all. The worker tells them
apart by its heartbeat, which reads a key on every member (limiter/cluster.py,
``ping_every_member``). The member frozen here is the owner of the heartbeat's first
key, the one a single-key heartbeat would read, so a heartbeat of one key would hear
nothing either and take the cluster for unreachable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import pytest

from limiter import BackendError, connect, create_strategy
from limiter.cluster import HEARTBEAT_KEY
from limiter.entry_processor import EntryProcessorStrategy, shard_entry_of
from limiter.kv_window import policy_key
from limiter.processor_wire import processor_key
from limiter.rule import Reason
from stack import Stack
from tests.cluster import MEMBERS
from tests.cluster import test_settings as suite_settings
from tests.faults import PartitionView
from tests.loop import LoopThread

DECISION_TIMEOUT_SECONDS = 1.0
DEADLINE_SECONDS = 60.0


@pytest.fixture
def frozen_cluster(all_spare_members: Stack) -> Stack:
    """The session's spare members (tests/conftest.py): each case thaws what it froze."""
    return all_spare_members


@pytest.mark.parametrize("strategy_name", ["entry_processor", "cas", "lock"])
def test_a_decision_stuck_on_a_frozen_member_is_contended(
    frozen_cluster: Stack, strategy_name: str
) -> None:
    """With one member frozen, a request whose key it owns is a contended 429 (nothing
    counted), not the failure mode, while the two others answer; after the member thaws,
    the same client is decided again."""
    stack = frozen_cluster
    view = PartitionView(stack, MEMBERS)
    loop = LoopThread()
    settings = suite_settings(
        hazelcast_members=",".join(stack.member_addresses(MEMBERS)),
        hazelcast_cluster_name=stack.cluster_name,
        counters_map=f"ratelimit.counters.frozen-{uuid.uuid4().hex[:8]}",
        decision_timeout_seconds=DECISION_TIMEOUT_SECONDS,
        lock_wait_seconds=0.9 * DECISION_TIMEOUT_SECONDS,
        lock_lease_seconds=2 * DECISION_TIMEOUT_SECONDS,
        counter_shards=271,
        shard_calls="per_shard",
    )
    link = loop.run(connect(settings))
    frozen_pid: int | None = None
    try:
        counters = loop.run(link.get_map(settings.counters_map))
        strategy = create_strategy(settings, counters, name=strategy_name, liveness=link.liveness)
        loop.run(_start_heartbeat(link, counters, settings))
        frozen = view.owner_of(f"{HEARTBEAT_KEY}:0")
        assert frozen is not None
        index = stack.member_addresses(MEMBERS).index(frozen)
        client = next(
            c
            for c in (str(uuid.uuid4()) for _ in range(10_000))
            if view.owner_of(_entry_key(strategy, c)) == frozen
        )
        first = loop.run(strategy.decide(client, 10, 3600))
        assert first.allowed, first

        frozen_pid = stack.pid_of(stack.member_name(index))
        assert frozen_pid is not None
        os.kill(frozen_pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            stuck = loop.run(strategy.decide(client, 10, 3600), timeout=30)
        except BackendError as error:
            pytest.fail(f"the failure mode answered while two members answer: {error!r}")
        took = time.monotonic() - started
        print(f"\n[{strategy_name}] frozen {frozen}: {stuck.reason.name} after {took:.2f}s")
        assert (stuck.allowed, stuck.reason) == (False, Reason.CONTENDED)
        assert took <= DECISION_TIMEOUT_SECONDS + 1.0
    finally:
        if frozen_pid is not None:
            os.kill(frozen_pid, signal.SIGCONT)
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            again = loop.run(strategy.decide(client, 10, 3600), timeout=30)
            if again.reason is not Reason.CONTENDED or time.monotonic() > deadline:
                break
            loop.run(asyncio.sleep(0.2))  # pacing: the thawed member catches up
        assert again.allowed and again.remaining <= 8, again
        loop.run(strategy.close())
    finally:
        loop.run(link.close())
        view.close()
        loop.close()


def _entry_key(strategy: object, client_id: str) -> str:
    """The key whose owner decides the client: its shard entry, or its own key."""
    if isinstance(strategy, EntryProcessorStrategy):
        return shard_entry_of(processor_key(client_id), strategy.shard_count)
    return policy_key(client_id)


async def _start_heartbeat(link: Any, counters: Any, settings: Any) -> None:
    """The replica's heartbeat, started on the link's loop as the replica starts it."""
    link.start_heartbeat(
        counters, settings.heartbeat_interval_seconds, settings.decision_timeout_seconds
    )
