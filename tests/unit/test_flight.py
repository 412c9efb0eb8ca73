"""One operation in flight per key, the deny cache and busy-versus-unreachable, on a
strategy whose storage is a dict: the queueing logic alone, without a cluster (the same
behaviour on the real cluster is in tests/property and tests/integration)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from hazelcast.errors import TargetDisconnectedError

from limiter import (
    Alignment,
    BackendTimeout,
    BackendUnavailable,
    Decision,
    LimiterSettings,
    Liveness,
    Reason,
    Strategy,
    WindowState,
    decide_batch,
    window_start,
)
from limiter.base import Quota
from limiter.deny_cache import DenyCache

NOW_MS = 1_800_000_000_000


class DictStrategy(Strategy):
    """The pure batch rule over a dict, with a configurable delay per operation."""

    name = "dict"

    def __init__(
        self, delay: float = 0.005, *, liveness: Liveness | None = None, **config: Any
    ) -> None:
        self.now = NOW_MS
        settings = dataclasses.replace(LimiterSettings().strategy_config, **config)
        super().__init__(None, settings, clock=lambda: self.now, liveness=liveness)
        self.delay = delay
        self.store: dict[str, WindowState] = {}
        self.batches: list[list[int]] = []
        self.failure: Exception | None = None
        #: Set once an operation has been sent (a request is in flight).
        self.sending = asyncio.Event()

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[Decision]:
        self.batches.append(list(costs))
        self.sending.set()
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        key = f"{quota.client_id}:{quota.window_seconds}"
        state, decisions = decide_batch(
            self.store.get(key), self.now, costs, quota.limit, quota.window_seconds
        )
        self.store[key] = state
        return decisions

    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        return self.store.get(f"{client_id}:{window_seconds}")


class OneLaneDictStrategy(DictStrategy):
    """Every key in one lane, decided by one operation per batch, as the entry
    processor's shard layout does."""

    name = "dict-one-lane"

    def __init__(self, delay: float = 0.005, **config: Any) -> None:
        super().__init__(delay, **config)
        self.lane_batches: list[list[tuple[str, list[int]]]] = []

    def _lane(self, quota: Quota) -> Hashable:
        return "the-only-lane"

    async def _decide_lane(
        self, lane: Hashable, batches: Sequence[tuple[Quota, Sequence[int]]], deadline: float
    ) -> list[list[Decision]]:
        assert lane == "the-only-lane"
        self.lane_batches.append([(quota.client_id, list(costs)) for quota, costs in batches])
        self.sending.set()
        await asyncio.sleep(self.delay)
        answers = []
        for quota, costs in batches:
            key = f"{quota.client_id}:{quota.window_seconds}"
            state, decisions = decide_batch(
                self.store.get(key), self.now, costs, quota.limit, quota.window_seconds
            )
            self.store[key] = state
            answers.append(decisions)
        return answers


async def flood(strategy: Strategy, requests: int, limit: int = 100) -> list[Decision]:
    return list(await asyncio.gather(*(strategy.decide("c", limit, 60) for _ in range(requests))))


def test_a_flood_on_one_key_is_decided_by_a_few_operations_exactly() -> None:
    """300 concurrent requests on one key: exactly the limit admitted, and each cluster
    operation decides a whole queue (at most a handful of operations, not 300)."""
    strategy = DictStrategy()
    decisions = asyncio.run(flood(strategy, 300))
    assert sum(d.allowed for d in decisions) == 100
    assert sum(len(batch) for batch in strategy.batches) == 300
    assert len(strategy.batches) <= 3, [len(b) for b in strategy.batches]
    remaining = [d.remaining for d in decisions if d.allowed]
    assert sorted(remaining, reverse=True) == list(range(99, -1, -1))


def test_requests_past_the_queue_bound_are_shed_at_once() -> None:
    """With the queue full, a request is denied as contended without waiting."""
    strategy = DictStrategy(delay=0.2, max_queued_per_key=5)

    async def scenario() -> tuple[list[Decision], bool]:
        first = asyncio.create_task(strategy.decide("c", 100, 60))
        await strategy.sending.wait()  # the first request's operation is in flight
        queued = [asyncio.create_task(strategy.decide("c", 100, 60)) for _ in range(8)]
        await asyncio.sleep(0)  # one turn of the loop: each queued task has run once
        shed = [task.result() for task in queued if task.done()]
        operation_still_running = not first.done()
        await asyncio.gather(first, *queued)
        return shed, operation_still_running

    shed, operation_still_running = asyncio.run(scenario())
    assert len(shed) == 3
    assert all(d.reason == Reason.CONTENDED and not d.allowed for d in shed)
    assert operation_still_running  # answered without waiting for the key's operation


def test_a_late_decision_is_contended_while_the_cluster_answers() -> None:
    """A decision past its deadline is a contended denial when the cluster is reachable,
    and comes at the deadline, not when the slow operation ends."""
    strategy = DictStrategy(delay=1.0, decision_timeout_seconds=0.2)

    async def scenario() -> tuple[Decision, float]:
        started = time.monotonic()
        decision = await strategy.decide("c", 100, 60)
        elapsed = time.monotonic() - started
        await strategy.close()
        return decision, elapsed

    decision, elapsed = asyncio.run(scenario())
    assert (decision.allowed, decision.reason) == (False, Reason.CONTENDED)
    assert 0.2 <= elapsed < 0.5


def test_a_late_decision_is_a_timeout_when_the_cluster_is_silent() -> None:
    """The same late decision raises BackendTimeout (failure mode) when nothing answered
    while it waited."""
    strategy = DictStrategy(delay=1.0, decision_timeout_seconds=0.2, liveness=Liveness())

    async def scenario() -> None:
        try:
            with pytest.raises(BackendTimeout):
                await strategy.decide("c", 100, 60)
        finally:
            await strategy.close()

    asyncio.run(scenario())


def test_a_request_that_timed_out_in_the_queue_is_never_counted() -> None:
    """A request whose deadline passed before its batch was sent is left out of it."""
    strategy = DictStrategy(delay=0.3)

    async def scenario() -> Decision:
        first = asyncio.create_task(strategy.decide("c", 100, 60))
        await strategy.sending.wait()
        loop = asyncio.get_running_loop()
        late = await strategy.decide("c", 100, 60, deadline=loop.time() + 0.05)
        await first
        await strategy.close()
        return late

    late = asyncio.run(scenario())
    assert late.reason == Reason.CONTENDED
    assert strategy.batches == [[1]]
    assert strategy.store["c:60"].count == 1


def test_cluster_errors_reach_every_waiter_as_unavailable() -> None:
    """A HazelcastError from the batch's operation is BackendUnavailable for each request."""
    strategy = DictStrategy()
    strategy.failure = TargetDisconnectedError("member left")

    async def scenario() -> list[BaseException | Decision]:
        return await asyncio.gather(
            *(strategy.decide("c", 100, 60) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, BackendUnavailable) for r in results), results


def test_an_exhausted_window_is_denied_locally_until_it_ends() -> None:
    """After the limit is reached, requests are denied without a cluster operation, with
    the rule's own answer, until the window ends; then the cluster is asked again."""
    strategy = DictStrategy()

    async def scenario() -> None:
        assert sum(d.allowed for d in await flood(strategy, 5, limit=5)) == 5
        operations = len(strategy.batches)
        strategy.now += 1000
        denied = await strategy.decide("c", 5, 60)
        assert len(strategy.batches) == operations
        expected_reset = window_start(NOW_MS, 60) + 60_000 - strategy.now
        assert denied == Decision(False, 5, 0, expected_reset, Reason.LIMIT_REACHED)
        over = await strategy.decide("c", 5, 60, cost=9)
        assert over.reason == Reason.COST_OVER_LIMIT
        strategy.now = window_start(NOW_MS, 60) + 60_000
        assert (await strategy.decide("c", 5, 60)).allowed
        assert len(strategy.batches) == operations + 1

    asyncio.run(scenario())


def test_a_raised_limit_bypasses_the_deny_cache_at_once() -> None:
    """The cache is keyed by limit and window: a client whose limit was raised is asked
    about again straight away, and admitted."""
    strategy = DictStrategy()

    async def scenario() -> None:
        await flood(strategy, 3, limit=3)
        assert not (await strategy.decide("c", 3, 60)).allowed
        assert (await strategy.decide("c", 4, 60)).allowed

    asyncio.run(scenario())


def test_the_deny_cache_is_bounded_oldest_first() -> None:
    """Past its size, the cache forgets the entry remembered first."""
    cache = DenyCache(2)
    for client in ("a", "b", "c"):
        cache.remember(Quota(client, 1, 60, Alignment.CLOCK), 10_000)
    assert len(cache) == 2
    assert cache.denial(Quota("a", 1, 60, Alignment.CLOCK), 1, 0) is None
    assert cache.denial(Quota("c", 1, 60, Alignment.CLOCK), 1, 0) is not None


def test_a_cached_denial_never_reports_a_window_end_before_the_true_one() -> None:
    """The cache stops denying a round trip early (counted from the send) but reports the
    rest of the window counted from the answer's arrival, so Retry-After never points
    before the window's end."""
    cache = DenyCache(4)
    quota = Quota("a", 1, 60, Alignment.CLOCK)
    # Sent at 0, answered at 40, the member said 1,000 ms were left when it decided.
    cache.remember(quota, 0 + 1000, 40 + 1000)
    denial = cache.denial(quota, 1, 500)
    assert denial is not None and denial.reset_after_ms == 540
    assert cache.denial(quota, 1, 1000) is None


def test_a_lane_of_many_keys_decides_them_together_and_exactly() -> None:
    """Floods on 20 keys sharing one lane: each key admits exactly its limit, and one
    operation carries many keys' batches (each key once, its requests in order)."""
    strategy = OneLaneDictStrategy()

    async def scenario() -> list[list[Decision]]:
        return list(
            await asyncio.gather(
                *(
                    asyncio.gather(*(strategy.decide(f"k{k}", 7, 60) for _ in range(10)))
                    for k in range(20)
                )
            )
        )

    per_key = asyncio.run(scenario())
    assert [sum(d.allowed for d in decisions) for decisions in per_key] == [7] * 20
    assert len(strategy.lane_batches) <= 3, [len(b) for b in strategy.lane_batches]
    assert max(len(batches) for batches in strategy.lane_batches) >= 10
    for batches in strategy.lane_batches:
        keys = [key for key, _ in batches]
        assert len(keys) == len(set(keys))


def test_the_queue_bound_counts_each_key_of_a_lane_apart() -> None:
    """In a shared lane, a full key is shed while another key's requests still queue."""
    strategy = OneLaneDictStrategy(delay=0.2, max_queued_per_key=3)

    async def scenario() -> tuple[list[Decision], list[Decision]]:
        first = asyncio.create_task(strategy.decide("busy", 100, 60))
        await strategy.sending.wait()
        busy = [asyncio.create_task(strategy.decide("busy", 100, 60)) for _ in range(5)]
        other = [asyncio.create_task(strategy.decide("other", 100, 60)) for _ in range(3)]
        await asyncio.sleep(0)
        shed = [task.result() for task in busy + other if task.done()]
        await asyncio.gather(first, *busy)
        return shed, list(await asyncio.gather(*other))

    shed, other = asyncio.run(scenario())
    assert len(shed) == 2
    assert all(d.reason == Reason.CONTENDED for d in shed)
    assert all(d.allowed for d in other)


def test_a_late_request_in_a_shared_lane_is_contended_with_its_own_limit() -> None:
    """A deadline passed in a lane of several keys answers that request, with its key's
    limit, at its deadline."""
    strategy = OneLaneDictStrategy(delay=1.0, decision_timeout_seconds=0.2)

    async def scenario() -> list[Decision]:
        decisions = await asyncio.gather(strategy.decide("a", 5, 60), strategy.decide("b", 9, 60))
        await strategy.close()
        return list(decisions)

    decisions = asyncio.run(scenario())
    assert [(d.allowed, d.reason, d.limit) for d in decisions] == [
        (False, Reason.CONTENDED, 5),
        (False, Reason.CONTENDED, 9),
    ]


async def _until(condition: Any, seconds: float = 2.0) -> None:
    """Polls ``condition`` each loop turn until it holds, failing after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.001)


def test_a_busy_lane_gathers_more_requests_before_its_next_call() -> None:
    """Two requests queued during a call mark the lane busy: the next call waits within
    the window and also carries the one that came meanwhile (without the window, it
    would have gone in a third call)."""

    async def scenario(window: float) -> list[int]:
        strategy = DictStrategy(delay=0.05, batch_window_seconds=window, batch_limit=100)
        first = asyncio.create_task(strategy.decide("c", 100, 60))
        await strategy.sending.wait()
        queued = [asyncio.create_task(strategy.decide("c", 100, 60)) for _ in range(2)]
        await _until(lambda: len(strategy.batches) == 2 or _gathering(strategy))
        late = asyncio.create_task(strategy.decide("c", 100, 60))
        decisions = await asyncio.gather(first, *queued, late)
        assert all(d.allowed for d in decisions)
        return [len(batch) for batch in strategy.batches]

    assert asyncio.run(scenario(window=0.5)) == [1, 3]
    assert asyncio.run(scenario(window=0.0)) == [1, 2, 1]


def test_a_busy_lane_at_the_batch_limit_calls_without_waiting() -> None:
    """Once the busy lane holds batch_limit requests it calls at once, not at the end of
    a window far longer than the test may take."""

    async def scenario() -> list[int]:
        strategy = DictStrategy(delay=0.05, batch_window_seconds=60.0, batch_limit=5)
        first = asyncio.create_task(strategy.decide("c", 100, 60))
        await strategy.sending.wait()
        queued = [asyncio.create_task(strategy.decide("c", 100, 60)) for _ in range(2)]
        await _until(lambda: _gathering(strategy))
        more = [asyncio.create_task(strategy.decide("c", 100, 60)) for _ in range(3)]
        await asyncio.wait_for(asyncio.gather(first, *queued, *more), 5.0)
        return [len(batch) for batch in strategy.batches]

    assert asyncio.run(scenario()) == [1, 5]


def test_a_lane_that_is_not_busy_never_waits_for_more() -> None:
    """A lone request, and one queued alone behind a call, are sent at once even with a
    window of a minute."""

    async def scenario() -> list[int]:
        strategy = DictStrategy(delay=0.02, batch_window_seconds=60.0, batch_limit=100)
        await asyncio.wait_for(strategy.decide("c", 100, 60), 5.0)
        strategy.sending.clear()
        first = asyncio.create_task(strategy.decide("c", 100, 60))
        await strategy.sending.wait()
        second = asyncio.create_task(strategy.decide("c", 100, 60))
        await asyncio.wait_for(asyncio.gather(first, second), 5.0)
        return [len(batch) for batch in strategy.batches]

    assert asyncio.run(scenario()) == [1, 1, 1]


def _gathering(strategy: Strategy) -> bool:
    return any(flight.gathering is not None for flight in strategy._flights.values())
