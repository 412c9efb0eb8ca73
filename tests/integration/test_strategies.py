"""Strategy behaviour that the properties do not show: locks, expiry, bounded failures."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.settings import Settings
from limiter import (
    STRATEGY_NAMES,
    Alignment,
    BackendTimeout,
    BackendUnavailable,
    CasStrategy,
    Decision,
    LimiterSettings,
    Liveness,
    LockConfig,
    LockStrategy,
    Policy,
    Reason,
    StrategyConfig,
    WindowState,
    connect,
    create_strategy,
    window_start,
)
from limiter.entry_processor import counter_entry
from limiter.kv_window import Written, decode_states, policy_key
from tests.loop import LoopThread

NOW_MS = 1_800_000_000_000


async def while_another_task_holds(
    counters: Any, key: str, lease_seconds: float, body: Callable[[], Awaitable[Any]]
) -> Any:
    """Runs ``body`` while a separate asyncio task of this process holds ``key``'s lock."""
    locked = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        assert await counters.try_lock(key, lease_time=lease_seconds, timeout=5)
        locked.set()
        await release.wait()
        await counters.unlock(key)

    holding = asyncio.create_task(holder())
    await locked.wait()
    try:
        return await body()
    finally:
        release.set()
        await holding


def test_lock_excludes_another_task_of_the_same_process(counters: Any, loop: LoopThread) -> None:
    """The client owns a lock per asyncio task: a second task of one process cannot take it."""

    async def scenario() -> tuple[bool, bool]:
        async def other_task_tries() -> bool:
            return bool(await counters.try_lock("k", lease_time=5, timeout=0.3))

        during = await while_another_task_holds(
            counters, "k", 30, lambda: asyncio.create_task(other_task_tries())
        )

        async def lock_and_unlock() -> bool:
            got = bool(await counters.try_lock("k", lease_time=5, timeout=5))
            await counters.unlock("k")
            return got

        after = await asyncio.create_task(lock_and_unlock())
        return during, after

    assert loop.run(scenario()) == (False, True)


def test_a_lock_not_acquired_is_a_contended_denial_not_an_unlocked_decision(
    counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """Unlike the original, a busy lock denies the request (contended) and writes nothing."""
    settings = Settings(**{**base_settings.__dict__, "lock_wait_seconds": 0.3})
    strategy = create_strategy(settings, counters, clock=lambda: NOW_MS, name="lock")
    key = policy_key("c")

    async def scenario() -> Decision:
        return await strategy.decide("c", 10, 60)

    decision = loop.run(while_another_task_holds(counters, key, 30, scenario))
    assert (decision.allowed, decision.reason) == (False, Reason.CONTENDED)
    assert loop.run(counters.get(key)) is None


def test_the_lease_frees_a_lock_whose_holder_never_unlocks(
    counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A holder that dies with the lock (a task that ends without unlocking) blocks others
    only until the lease runs out."""
    strategy = create_strategy(base_settings, counters, clock=lambda: NOW_MS, name="lock")
    key = policy_key("c")

    async def scenario() -> tuple[bool, float]:
        async def dies_holding() -> None:
            assert await counters.try_lock(key, lease_time=1.0, timeout=5)

        # Kept referenced: the client names lock owners by id(task), which a new task
        # could otherwise reuse and so inherit the dead one's lock.
        dead = asyncio.create_task(dies_holding())
        await dead
        started = time.monotonic()
        decision = await strategy.decide("c", 10, 60)
        assert dead.done()
        return decision.allowed, time.monotonic() - started

    allowed, waited = loop.run(scenario())
    assert allowed
    assert 0.3 < waited < base_settings.lock_wait_seconds


def lock_strategy(
    counters: Any,
    kind: type[LockStrategy] = LockStrategy,
    *,
    decision_timeout_seconds: float,
    lock_wait_seconds: float,
    lock_lease_seconds: float,
    liveness: Liveness | None = None,
) -> LockStrategy:
    """A lock strategy on the pinned clock with these waits, which the settings would
    refuse (a lock wait above the decision timeout, a lease below the wait): the classes
    take whatever they are given."""
    config = dataclasses.replace(
        LimiterSettings().strategy_config, decision_timeout_seconds=decision_timeout_seconds
    )
    lock = LockConfig(lease_seconds=lock_lease_seconds, wait_seconds=lock_wait_seconds)
    return kind(counters, config, lock, clock=lambda: NOW_MS, liveness=liveness)


def slow_lock_strategy(
    counters: Any, kind: type[LockStrategy] = LockStrategy, liveness: Liveness | None = None
) -> LockStrategy:
    """A lock strategy whose 0.5 s decision timeout ends long before its lock wait."""
    return lock_strategy(
        counters,
        kind,
        decision_timeout_seconds=0.5,
        lock_wait_seconds=30.0,
        lock_lease_seconds=60.0,
        liveness=liveness,
    )


async def timed_decision(strategy: LockStrategy) -> tuple[Decision | BackendTimeout, float]:
    started = time.monotonic()
    try:
        outcome: Decision | BackendTimeout = await strategy.decide("c", 10, 60)
    except BackendTimeout as timeout:
        outcome = timeout
    return outcome, time.monotonic() - started


def test_a_decision_on_a_busy_key_is_denied_at_the_bound_and_leaves_no_lock(
    counters: Any, loop: LoopThread
) -> None:
    """A decision whose lock another holder keeps ends at the decision timeout, not later
    and not a hang, denied as contended; the lock it waited for is released once granted."""
    strategy = slow_lock_strategy(counters)
    key = policy_key("c")
    outcome, waited = loop.run(
        while_another_task_holds(counters, key, 60, lambda: timed_decision(strategy))
    )
    assert isinstance(outcome, Decision), outcome
    assert (outcome.allowed, outcome.reason) == (False, Reason.CONTENDED)
    # The lock wait is capped at the deadline, and the member may end it a few ms early.
    assert 0.45 <= waited < 0.5 + 2.0
    loop.run(strategy.close())  # the runner got the lock after the holder, and ended
    assert loop.run(counters.is_locked(key)) is False


class SilentLockStrategy(LockStrategy):
    """The lock strategy facing a cluster that answers nothing (members frozen): its lock
    request gets no answer until well past the decision timeout."""

    async def _lock(self, key: str, wait: float) -> bool:
        await asyncio.sleep(1.5)
        return False


def test_a_decision_with_a_silent_cluster_is_a_timeout_at_the_bound(
    counters: Any, loop: LoopThread
) -> None:
    """When nothing answers while the decision waits, it ends at the decision timeout with
    BackendTimeout (the failure mode applies), not when the silent call gives up."""
    strategy = slow_lock_strategy(counters, SilentLockStrategy, liveness=Liveness())
    outcome, waited = loop.run(timed_decision(strategy))
    assert isinstance(outcome, BackendTimeout), outcome
    assert "no answer from the cluster" in str(outcome)
    assert 0.5 <= waited < 1.5
    loop.run(strategy.close())


def test_an_unreachable_cluster_is_unavailable_after_the_connect_timeout(
    loop: LoopThread, base_settings: Settings
) -> None:
    """Connecting to an address where no member listens fails with BackendUnavailable,
    after the configured wait."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    settings = Settings(
        **{
            **base_settings.__dict__,
            "hazelcast_members": f"127.0.0.1:{free_port}",
            "connect_timeout_seconds": 1.0,
        }
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"within 1\.0s"):
        loop.run(connect(settings))
    assert time.monotonic() - started < 1.0 + 5.0


def test_replace_if_same_drops_the_per_entry_ttl(counters: Any, loop: LoopThread) -> None:
    """The trap the cas strategy designs around: after replace_if_same the entry carries
    the map's TTL (90000 s in hazelcast.xml), no longer the one it was created with."""

    async def scenario() -> tuple[int, int]:
        await counters.put_if_absent("k", 1, ttl=30)
        before = (await counters.get_entry_view("k")).ttl
        assert await counters.replace_if_same("k", 1, 2)
        return before, (await counters.get_entry_view("k")).ttl

    assert loop.run(scenario()) == (30_000, 90_000_000)


def production_waits(base: Settings, **overrides: Any) -> Settings:
    """The test settings with the production decision timeout (1 s) and lock wait, so
    that a short expiry grace passes the start-up check."""
    values = {
        "decision_timeout_seconds": 1.0,
        "lock_wait_seconds": 0.5,
        "max_clock_skew_seconds": 0.5,
    }
    return dataclasses.replace(base, **(values | overrides))


async def until_window_offset(window_seconds: int, offset_seconds: float) -> None:
    """Sleeps until the real clock is ``offset_seconds`` into a window (the next one, when
    this one is past that point): the scenario needs the instant, not a server."""
    window = window_seconds * 1000
    now = time.time_ns() // 1_000_000
    target = window_start(now, window_seconds) + int(offset_seconds * 1000)
    if target <= now:
        target += window
    await asyncio.sleep((target - now) / 1000)


@pytest.mark.parametrize("strategy_name", ["lock", "cas"])
def test_a_decider_whose_clock_is_ahead_never_shortens_a_window(
    strategy_name: str, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A replica 0.8 s ahead spends a client's limit early in a 3 s window; a replica on
    the true clock asking 0.3 s before the window ends still finds it spent (the grace
    covers the skew), while the same scenario with a grace below the skew, which the
    start-up check refuses, admits a request the window had no room for."""
    skew_ms, window = 800, 3
    settings = production_waits(base_settings, max_clock_skew_seconds=1.0, expiry_grace_seconds=2.0)
    too_short = dataclasses.replace(settings.strategy_config, expiry_grace_seconds=0.1)

    def build(config: StrategyConfig, clock: Any) -> Any:
        if strategy_name == "lock":
            return LockStrategy(counters, config, settings.lock_config, clock=clock)
        return CasStrategy(counters, config, settings.cas_config, clock=clock)

    def ahead() -> int:
        return time.time_ns() // 1_000_000 + skew_ms

    async def late_request(grace_config: StrategyConfig, client: str) -> Decision:
        early, on_time = build(grace_config, ahead), build(grace_config, None)
        await until_window_offset(window, 0.2)
        for _ in range(3):
            assert (await early.decide(client, 3, window)).allowed
        await until_window_offset(window, window - 0.3)
        decision = await on_time.decide(client, 3, window)
        for strategy in (early, on_time):
            await strategy.close()
        return decision

    covered = loop.run(late_request(settings.strategy_config, "covered"))
    short = loop.run(late_request(too_short, "short"))
    print(f"\n{strategy_name}: grace 2.0 s -> {covered.reason.name}; 0.1 s -> {short.reason.name}")
    assert (covered.allowed, covered.reason) == (False, Reason.LIMIT_REACHED)
    assert short.allowed, "the scenario must be able to show an early expiry"


def test_cas_restores_the_window_ttl_after_replacing(
    counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """After the cas strategy's replace, the key's TTL is its window's again."""
    settings = production_waits(base_settings, expiry_grace_seconds=2.0)
    strategy = create_strategy(settings, counters, clock=lambda: NOW_MS, name="cas")
    key = policy_key("c")

    async def scenario() -> int:
        for _ in range(3):
            assert (await strategy.decide("c", 10, 60)).allowed
        await strategy.close()
        return int((await counters.get_entry_view(key)).ttl)

    # The clock is pinned to a window start: the window has 60 s left, plus 2 s of grace.
    assert loop.run(scenario()) == 62_000


@pytest.mark.parametrize("alignment", Alignment)
@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_counter_map_empties_after_its_windows_pass(
    strategy_name: str,
    alignment: Alignment,
    counters: Any,
    loop: LoopThread,
    base_settings: Settings,
) -> None:
    """With the real clock and 1 s windows, every key a strategy wrote expires, for both
    alignments (one key per client holds whichever window is open): the map's size comes
    back to 0 once traffic stops."""
    settings = production_waits(base_settings, expiry_grace_seconds=1.5)
    strategy = create_strategy(settings, counters, name=strategy_name)
    # The entry processor's shard layout keeps its windows in a map of its own, and
    # clients of one shard share an entry.
    written = getattr(strategy, "shards", None) or counters
    entries = 3
    if written is not counters:
        entries = len({counter_entry("m", settings.counter_shards, c) for c in "abc"})

    async def traffic() -> int:
        for client in ("a", "b", "c"):
            for _ in range(3):  # the second and third go through replace for cas
                await strategy.decide(client, 10, 1, alignment=alignment)
        await strategy.close()
        return int(await written.size())

    assert loop.run(traffic()) >= entries
    deadline = time.monotonic() + 45
    size = -1
    while time.monotonic() < deadline:
        size = loop.run(written.size())
        if size == 0:
            break
        time.sleep(0.5)  # expiry is the cluster's own clock at work; poll it
    assert size == 0, f"{strategy_name}: {size} counter keys still alive after 45 s"


class StallingLockStrategy(LockStrategy):
    """The lock strategy pausing between its read and its write, as a replica does that
    stalls (a long GC, a blocked event loop) while it holds the lock."""

    #: How long the write waits.
    stall_seconds = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stalling = asyncio.Event()

    async def _write(self, key: str, read: Any, value: str, ttl_ms: int) -> Written:
        self.stalling.set()
        await asyncio.sleep(self.stall_seconds)
        return await super()._write(key, read, value, ttl_ms)


def test_a_lock_holder_stalled_past_its_lease_cannot_overwrite_a_newer_count(
    counters: Any, loop: LoopThread
) -> None:
    """A holder whose lease runs out between its read and its write, while another
    replica takes the lock and spends the whole limit, writes nothing and denies its
    request (contended): a third replica then finds the limit spent, not a stale count."""
    waits = {"decision_timeout_seconds": 10.0, "lock_wait_seconds": 5.0, "lock_lease_seconds": 1.0}
    stalled = lock_strategy(counters, StallingLockStrategy, **waits)
    assert isinstance(stalled, StallingLockStrategy)
    other, third = lock_strategy(counters, **waits), lock_strategy(counters, **waits)
    key = policy_key("c")

    async def scenario() -> tuple[Decision, list[Decision], Decision, int]:
        late = asyncio.create_task(stalled.decide("c", 2, 60))
        await stalled.stalling.wait()  # it holds the lock and has read an empty window
        spent = [await other.decide("c", 2, 60) for _ in range(2)]  # once the lease ends
        after = await third.decide("c", 2, 60)
        for strategy in (stalled, other, third):
            await strategy.close()
        return await late, spent, after, await counters.get(key)

    late, spent, after, stored = loop.run(scenario())
    print(f"\nstalled holder: {late.reason.name}; the others: {[d.allowed for d in spent]}")
    assert [d.allowed for d in spent] == [True, True]
    assert (late.allowed, late.reason) == (False, Reason.CONTENDED)
    assert (after.allowed, after.reason) == (False, Reason.LIMIT_REACHED)
    assert decode_states(stored, Policy.single(2, 60)) == (
        WindowState(window_start(NOW_MS, 60), 2),
    )
