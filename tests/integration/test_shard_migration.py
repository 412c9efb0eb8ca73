"""Partitions moving under load with 100,000 windows in the entry processor's shards: a
member SIGKILLed during a flood, then a new one started during the same flood, on the
session's spare members (tests/conftest.py), decided in process
(no replicas: the windows and their moves are the members').

What must hold: no client is admitted beyond its limit, neither a flooded one (limit
``FLOOD_LIMIT``) nor any of the 100,000 opened before the kill at their limit of 1 (each
is asked once more afterwards, past the deny cache: a window lost in a move would admit
it again); and every flood decision answers within the decision
timeout plus 1 s. Why 0: each call goes to one shard entry (``per_shard``) and is
answered after its synchronous backup (tests/integration/test_member_loss.py explains the
same bound through nginx), so a promoted backup holds every count that was answered.
And nothing is counted twice or failed: no decision raises a backend error (a call lost
with its member is sent again with its id, limiter/call_ids.py), and each flooded
client's stored count is what it was admitted plus at most its contended answers (a
contended call may have counted).

The layout is the one for many keys, :data:`SHARDS` (271) shard entries, which spreads
the windows over every member, so the kill takes about a third of the shards' owners and
the new member takes a third back. The member killed is the owner of most shard entries.
``RATELIMIT_TEST_MIGRATION_WINDOWS`` runs it with another count (1,000,000: about 90 s),
``RATELIMIT_TEST_MIGRATION_SHARDS`` with another layout (1: the default, every window in
one entry, whose owner the kill then takes with a third of the members' chances).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from limiter import BackendError, connect, create_strategy
from limiter.quota import Quota
from limiter.rule import Alignment, Reason
from stack import Stack
from tests.cluster import MEMBERS
from tests.cluster import test_settings as suite_settings
from tests.faults import PartitionView
from tests.loop import LoopThread

WINDOWS = int(os.environ.get("RATELIMIT_TEST_MIGRATION_WINDOWS", "100000"))
FLOOD_CLIENTS = 200
FLOOD_LIMIT = 20
FLOOD_TASKS = 64
DECISION_TIMEOUT_SECONDS = 3.0
WINDOW_SECONDS = 3600
#: Windows that open with their first request: a clock-aligned hour could end during the
#: test, and every window asked again afterwards would then admit.
ALIGNMENT = Alignment.FIRST_REQUEST
DEADLINE_SECONDS = 90.0
#: The layout for many keys on a cluster that grows, each call answered after its
#: synchronous backup (the bound this test asserts).
SHARDS = int(os.environ.get("RATELIMIT_TEST_MIGRATION_SHARDS", "271"))


@pytest.fixture
def moving_cluster(all_spare_members: Stack) -> Stack:
    """The session's spare members (tests/conftest.py): the test restarts what it kills."""
    return all_spare_members


def client_ids(prefix: int, count: int) -> list[str]:
    """Ids of the registry's form (UUID4), which the shards keep packed."""
    return [str(uuid.UUID(int=(prefix << 64) | i, version=4)) for i in range(count)]


#: The most windows one call of decide_all carries (a fan-out lane holds them all).
CALL_WINDOWS = 4096


async def decide_all(strategy: Any, ids: list[str]) -> dict[str, bool]:
    """One request of cost 1 (limit 1) for each id, grouped by the strategy's lane and
    decided with its lane call (``_decide_lane``, what a worker's queue becomes), at most
    ``CALL_WINDOWS`` ids a call, so 100,000 windows take a few dozen calls; whether each
    was admitted. No deny cache."""
    by_lane: dict[Any, list[tuple[Quota, list[int]]]] = collections.defaultdict(list)
    for client_id in ids:
        quota = Quota.single(client_id, 1, WINDOW_SECONDS, ALIGNMENT)
        by_lane[strategy._lane(quota)].append((quota, [1]))
    calls = [
        (lane, chunk)
        for lane, batches in by_lane.items()
        for chunk in _chunks(batches, CALL_WINDOWS)
    ]
    deadline = time.monotonic() + 120
    allowed: dict[str, bool] = {}
    for group in _chunks(calls, 32):
        answers = await asyncio.gather(
            *(strategy._decide_lane(lane, batches, deadline) for lane, batches in group)
        )
        for (_, batches), answer in zip(group, answers, strict=True):
            for (quota, _), window in zip(batches, answer, strict=True):
                allowed[quota.client_id] = window[0].allowed
    return allowed


async def used_by(strategy: Any, ids: list[str]) -> dict[str, int]:
    """Each flood client's stored count, read by a peek (cost 0: counts nothing)."""
    peeks = await asyncio.gather(
        *(strategy.peek(c, FLOOD_LIMIT, WINDOW_SECONDS, alignment=ALIGNMENT) for c in ids)
    )
    return {c: FLOOD_LIMIT - peek.remaining for c, peek in zip(ids, peeks, strict=True)}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


class Flood:
    """``FLOOD_TASKS`` tasks deciding for random flood clients until stopped; what each
    client was admitted, and the slowest answer."""

    def __init__(self, strategy: Any, ids: list[str]) -> None:
        self.strategy = strategy
        self.ids = ids
        self.admitted: collections.Counter[str] = collections.Counter()
        self.contended: collections.Counter[str] = collections.Counter()
        #: Backend errors (the failure mode would answer them), by client.
        self.failed: collections.Counter[str] = collections.Counter()
        self.answers = 0
        self.slowest = 0.0
        self.running = True

    async def run(self) -> None:
        async def worker(seed: int) -> None:
            draw = random.Random(seed)
            while self.running:
                client_id = draw.choice(self.ids)
                started = time.monotonic()
                try:
                    decision = await self.strategy.decide(
                        client_id, FLOOD_LIMIT, WINDOW_SECONDS, alignment=ALIGNMENT
                    )
                except BackendError:
                    decision = None
                    self.failed[client_id] += 1
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers += 1
                if decision is not None and decision.allowed:
                    self.admitted[client_id] += 1
                elif decision is not None and decision.reason is Reason.CONTENDED:
                    self.contended[client_id] += 1
                await asyncio.sleep(0.005)

        await asyncio.gather(*(worker(seed) for seed in range(FLOOD_TASKS)))


def wait_for(what: str, check: Any, deadline_seconds: float = DEADLINE_SECONDS) -> float:
    """Polls ``check`` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < deadline_seconds, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def test_windows_survive_partitions_moving_under_a_flood(moving_cluster: Stack) -> None:
    """100,000 windows at their limit and a flood of 200 clients: a member SIGKILLed,
    then a new one started, both during the flood; no client admitted beyond its limit,
    every flood answer within the decision timeout + 1 s."""
    stack = moving_cluster
    loop = LoopThread()
    view = PartitionView(stack, MEMBERS)
    settings = suite_settings(
        hazelcast_members=",".join(stack.member_addresses(MEMBERS)),
        hazelcast_cluster_name=stack.cluster_name,
        counters_map=f"ratelimit.counters.moving-{uuid.uuid4().hex[:8]}",
        decision_timeout_seconds=DECISION_TIMEOUT_SECONDS,
        lock_wait_seconds=0.9 * DECISION_TIMEOUT_SECONDS,
        lock_lease_seconds=2 * DECISION_TIMEOUT_SECONDS,
        failure_mode="closed",
        counter_shards=SHARDS,
        shard_calls="per_shard",
    )
    windows = client_ids(random.getrandbits(32), WINDOWS)
    flooded = client_ids(random.getrandbits(32), FLOOD_CLIENTS)
    link = loop.run(connect(settings))
    try:
        counters = loop.run(link.get_map(settings.counters_map))
        strategy = create_strategy(settings, counters, name="entry_processor")
        started = time.monotonic()
        opened = loop.run(decide_all(strategy, windows), timeout=300)
        assert len(opened) == WINDOWS and all(opened.values())
        print(f"\n{WINDOWS} windows opened in {time.monotonic() - started:.1f}s")
        flood = Flood(strategy, flooded)
        running = asyncio.run_coroutine_threadsafe(flood.run(), loop.loop)
        time.sleep(1.0)
        # The owner of most shard entries (with one, the owner of every window).
        shard_owners = collections.Counter(
            view.owner_of(f"shard-{i}-of-{SHARDS}") for i in range(SHARDS)
        )
        victim = max(range(MEMBERS), key=lambda i: shard_owners[stack.member_addresses(MEMBERS)[i]])
        killed = time.monotonic()
        stack.kill(stack.member_name(victim))
        dropped = wait_for("the cluster to drop the member", lambda: len(view.members()) == 2)
        safe = wait_for("every partition owned by a live member", lambda: None not in view.owned())
        print(
            f"member {victim + 1} dropped after {dropped:.1f}s, partitions safe after "
            f"{time.monotonic() - killed:.1f}s (waited {safe:.1f}s more)"
        )
        stack.start_member(victim, MEMBERS)
        joined = time.monotonic()
        wait_for("the new member's partitions", lambda: len(view.owned()) == 3)
        print(f"new member owns partitions after {time.monotonic() - joined:.1f}s")
        time.sleep(2.0)
        flood.running = False
        running.result(timeout=30)
        again = [c for c, ok in loop.run(decide_all(strategy, windows)).items() if ok]
        stored = loop.run(used_by(strategy, flooded))
        loop.run(strategy.close())
    finally:
        loop.run(link.close())
        view.close()
        loop.close()
    over = {c: n - FLOOD_LIMIT for c, n in flood.admitted.items() if n > FLOOD_LIMIT}
    uncounted = {c: flood.admitted[c] - stored[c] for c in flooded if flood.admitted[c] > stored[c]}
    counted_more = {
        c: stored[c] - flood.admitted[c] for c in flooded if stored[c] > flood.admitted[c]
    }
    print(
        f"flood ({SHARDS} shards): {flood.answers} answers, slowest {flood.slowest:.2f}s, "
        f"admitted {sum(flood.admitted.values())}, contended {sum(flood.contended.values())}, "
        f"backend errors {sum(flood.failed.values())}, stored above the admitted "
        f"{sum(counted_more.values())} over {len(counted_more)} clients"
    )
    assert over == {}, f"flood clients admitted beyond their limit: {over}"
    assert uncounted == {}, f"admitted but not stored: {uncounted}"
    assert sum(flood.failed.values()) == 0, f"backend errors while members answered: {flood.failed}"
    assert all(n <= flood.contended[c] for c, n in counted_more.items()), (
        counted_more,
        flood.contended,
    )
    assert again == [], f"{len(again)} of {WINDOWS} windows admitted again after the moves"
    assert flood.slowest <= DECISION_TIMEOUT_SECONDS + 1.0
