"""The lane scheduler alone: one call in flight per lane, batches, the queue bound,
deadlines and busy-versus-unreachable, deciding over a dict instead of a cluster (the
same behaviour on the real cluster is in tests/property and tests/integration)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from typing import Any

import pytest
from hazelcast.errors import ClientOfflineError, TargetDisconnectedError

from limiter import (
    BackendTimeout,
    BackendUnavailable,
    Decision,
    Lanes,
    LimiterSettings,
    LimitState,
    Liveness,
    NullObserver,
    PolicyDecision,
    Quota,
    Reason,
    contended,
)
from limiter.lanes import Batches
from limiter.policy_rule import decide_batch

NOW_MS = 1_800_000_000_000
DEFAULTS = LimiterSettings().strategy_config


class DictLanes:
    """Lanes whose every call decides its batch with the pure rule over a dict, after a
    configurable delay; each quota is its own lane unless ``one_lane``."""

    def __init__(
        self,
        delay: float = 0.005,
        *,
        one_lane: bool = False,
        liveness: Liveness | None = None,
        max_queued: int = DEFAULTS.max_queued_per_key,
        batch_window_seconds: float = DEFAULTS.batch_window_seconds,
        batch_limit: int = DEFAULTS.batch_limit,
        decision_timeout_seconds: float = DEFAULTS.decision_timeout_seconds,
    ) -> None:
        self.delay = delay
        self.decision_timeout_seconds = decision_timeout_seconds
        self.store: dict[str, tuple[LimitState | None, ...]] = {}
        #: Each call's batch: (client id, costs) per quota.
        self.calls: list[list[tuple[str, list[int]]]] = []
        self.failure: Exception | None = None
        #: Set once a call has been sent (a request is in flight).
        self.sending = asyncio.Event()
        self.lanes = Lanes(
            self.decide,
            (lambda quota: "the-only-lane") if one_lane else (lambda quota: quota),
            max_queued=max_queued,
            batch_window_seconds=batch_window_seconds,
            batch_limit=batch_limit,
            observer=NullObserver(),
            liveness=liveness,
        )

    async def decide(
        self, lane: Hashable, batches: Batches, deadline: float
    ) -> list[list[PolicyDecision]]:
        self.calls.append([(quota.client_id, list(costs)) for quota, costs in batches])
        self.sending.set()
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        answers = []
        for quota, costs in batches:
            key = quota.client_id
            stored = self.store.get(key, (None,) * len(quota.policy))
            states, decisions = decide_batch(stored, NOW_MS, costs, quota.policy)
            self.store[key] = states
            answers.append(decisions)
        return answers

    async def ask(
        self, client_id: str, limit: int = 100, *, deadline: float | None = None
    ) -> Decision:
        """One request of cost 1 in a 60 s window, as a strategy submits it."""
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.decision_timeout_seconds
        answer = self.lanes.submit(Quota.single(client_id, limit, 60), 1, deadline)
        if answer is None:
            return contended(limit)
        decided = await answer
        return decided.decisions[0]._replace(reason=decided.reason)

    def sizes(self) -> list[int]:
        """Requests carried by each call, in order."""
        return [sum(len(costs) for _, costs in call) for call in self.calls]

    def gathering(self) -> bool:
        return any(queue.gathering is not None for queue in self.lanes.queues.values())


async def flood(lanes: DictLanes, requests: int, limit: int = 100) -> list[Decision]:
    return list(await asyncio.gather(*(lanes.ask("c", limit) for _ in range(requests))))


def test_a_flood_on_one_quota_is_decided_by_a_few_calls_exactly() -> None:
    """300 concurrent requests on one quota: exactly the limit admitted, and each call
    decides a whole queue (at most a handful of calls, not 300)."""
    lanes = DictLanes()
    decisions = asyncio.run(flood(lanes, 300))
    assert sum(d.allowed for d in decisions) == 100
    assert sum(lanes.sizes()) == 300
    assert len(lanes.calls) <= 3, lanes.sizes()
    remaining = [d.remaining for d in decisions if d.allowed]
    assert sorted(remaining, reverse=True) == list(range(99, -1, -1))


def test_requests_past_the_queue_bound_are_shed_at_once() -> None:
    """With the queue full, a request is denied as contended without waiting."""
    lanes = DictLanes(delay=0.2, max_queued=5)

    async def scenario() -> tuple[list[Decision], bool]:
        first = asyncio.create_task(lanes.ask("c"))
        await lanes.sending.wait()  # the first request's call is in flight
        queued = [asyncio.create_task(lanes.ask("c")) for _ in range(8)]
        await asyncio.sleep(0)  # one turn of the loop: each queued task has run once
        shed = [task.result() for task in queued if task.done()]
        call_still_running = not first.done()
        await asyncio.gather(first, *queued)
        return shed, call_still_running

    shed, call_still_running = asyncio.run(scenario())
    assert len(shed) == 3
    assert all(d.reason == Reason.CONTENDED and not d.allowed for d in shed)
    assert call_still_running  # answered without waiting for the quota's call


def test_a_late_decision_is_contended_while_the_cluster_answers() -> None:
    """A decision past its deadline is a contended denial when the cluster is reachable,
    and comes at the deadline, not when the slow call ends."""
    lanes = DictLanes(delay=1.0, decision_timeout_seconds=0.2)

    async def scenario() -> tuple[Decision, float]:
        started = time.monotonic()
        decision = await lanes.ask("c")
        elapsed = time.monotonic() - started
        await lanes.lanes.close()
        return decision, elapsed

    decision, elapsed = asyncio.run(scenario())
    assert (decision.allowed, decision.reason) == (False, Reason.CONTENDED)
    assert 0.2 <= elapsed < 0.5


def test_a_late_decision_is_a_timeout_when_the_cluster_is_silent() -> None:
    """The same late decision raises BackendTimeout (failure mode) when nothing answered
    while it waited."""
    now = [1000.0]
    liveness = Liveness(clock=lambda: now[0])
    now[0] += 1.0  # the last answer came a second before the request
    lanes = DictLanes(delay=1.0, decision_timeout_seconds=0.2, liveness=liveness)

    async def scenario() -> None:
        try:
            with pytest.raises(BackendTimeout):
                await lanes.ask("c")
        finally:
            await lanes.lanes.close()

    asyncio.run(scenario())


def test_a_request_that_timed_out_in_the_queue_is_never_counted() -> None:
    """A request whose deadline passed before its batch was sent is left out of it."""
    lanes = DictLanes(delay=0.3)

    async def scenario() -> Decision:
        first = asyncio.create_task(lanes.ask("c"))
        await lanes.sending.wait()
        loop = asyncio.get_running_loop()
        late = await lanes.ask("c", deadline=loop.time() + 0.05)
        await first
        await lanes.lanes.close()
        return late

    late = asyncio.run(scenario())
    assert late.reason == Reason.CONTENDED
    assert lanes.calls == [[("c", [1])]]
    assert lanes.store["c"][0].count == 1  # type: ignore[union-attr]


def test_a_refused_call_reaches_every_waiter_as_unavailable() -> None:
    """A call the cluster refused outright (no connection at all) is BackendUnavailable for
    each request: the failure mode decides."""
    lanes = DictLanes()
    lanes.failure = ClientOfflineError()

    async def scenario() -> list[BaseException | Decision]:
        return await asyncio.gather(*(lanes.ask("c") for _ in range(5)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, BackendUnavailable) for r in results), results


@pytest.mark.parametrize("answered", [True, False])
def test_a_call_of_unknown_fate_is_contended_while_the_cluster_answers(answered: bool) -> None:
    """A call lost with its member (fate unknown, no time to send it again) is a contended
    denial when the cluster answered something since the request came, and a
    BackendTimeout (the failure mode) when nothing answered: never a BackendUnavailable."""
    now = [1000.0]
    liveness = Liveness(clock=lambda: now[0])
    now[0] += 1.0  # the last answer came a second before the requests
    lanes = DictLanes(liveness=liveness)
    lanes.failure = TargetDisconnectedError("member left")

    async def scenario() -> list[BaseException | Decision]:
        asked = [asyncio.ensure_future(lanes.ask("c")) for _ in range(5)]
        await lanes.sending.wait()
        now[0] += 0.5
        if answered:
            liveness.answered()
        return await asyncio.gather(*asked, return_exceptions=True)

    results = asyncio.run(scenario())
    if answered:
        assert all(isinstance(r, Decision) and r.reason == Reason.CONTENDED for r in results)
    else:
        assert all(isinstance(r, BackendTimeout) for r in results), results


def test_a_lane_of_many_quotas_decides_them_together_and_exactly() -> None:
    """Floods on 20 quotas sharing one lane: each quota admits exactly its limit, and one
    call carries many quotas' batches (each quota once, its requests in order)."""
    lanes = DictLanes(one_lane=True)

    async def scenario() -> list[list[Decision]]:
        return list(
            await asyncio.gather(
                *(asyncio.gather(*(lanes.ask(f"k{k}", 7) for _ in range(10))) for k in range(20))
            )
        )

    per_quota = asyncio.run(scenario())
    assert [sum(d.allowed for d in decisions) for decisions in per_quota] == [7] * 20
    assert len(lanes.calls) <= 3, [len(call) for call in lanes.calls]
    assert max(len(call) for call in lanes.calls) >= 10
    for call in lanes.calls:
        clients = [client for client, _ in call]
        assert len(clients) == len(set(clients))


def test_the_queue_bound_counts_each_quota_of_a_lane_apart() -> None:
    """In a shared lane, a full quota is shed while another quota's requests still queue."""
    lanes = DictLanes(delay=0.2, one_lane=True, max_queued=3)

    async def scenario() -> tuple[list[Decision], list[Decision]]:
        first = asyncio.create_task(lanes.ask("busy"))
        await lanes.sending.wait()
        busy = [asyncio.create_task(lanes.ask("busy")) for _ in range(5)]
        other = [asyncio.create_task(lanes.ask("other")) for _ in range(3)]
        await asyncio.sleep(0)
        shed = [task.result() for task in busy + other if task.done()]
        await asyncio.gather(first, *busy)
        return shed, list(await asyncio.gather(*other))

    shed, other = asyncio.run(scenario())
    assert len(shed) == 2
    assert all(d.reason == Reason.CONTENDED for d in shed)
    assert all(d.allowed for d in other)


def test_a_late_request_in_a_shared_lane_is_contended_with_its_own_limit() -> None:
    """A deadline passed in a lane of several quotas answers that request, with its
    quota's limit, at its deadline."""
    lanes = DictLanes(delay=1.0, one_lane=True, decision_timeout_seconds=0.2)

    async def scenario() -> list[Decision]:
        decisions = await asyncio.gather(lanes.ask("a", 5), lanes.ask("b", 9))
        await lanes.lanes.close()
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
        lanes = DictLanes(delay=0.05, batch_window_seconds=window, batch_limit=100)
        first = asyncio.create_task(lanes.ask("c"))
        await lanes.sending.wait()
        queued = [asyncio.create_task(lanes.ask("c")) for _ in range(2)]
        await _until(lambda: len(lanes.calls) == 2 or lanes.gathering())
        late = asyncio.create_task(lanes.ask("c"))
        decisions = await asyncio.gather(first, *queued, late)
        assert all(d.allowed for d in decisions)
        return lanes.sizes()

    assert asyncio.run(scenario(window=0.5)) == [1, 3]
    assert asyncio.run(scenario(window=0.0)) == [1, 2, 1]


def test_a_busy_lane_at_the_batch_limit_calls_without_waiting() -> None:
    """Once the busy lane holds batch_limit requests it calls at once, not at the end of
    a window far longer than the test may take."""

    async def scenario() -> list[int]:
        lanes = DictLanes(delay=0.05, batch_window_seconds=60.0, batch_limit=5)
        first = asyncio.create_task(lanes.ask("c"))
        await lanes.sending.wait()
        queued = [asyncio.create_task(lanes.ask("c")) for _ in range(2)]
        await _until(lanes.gathering)
        more = [asyncio.create_task(lanes.ask("c")) for _ in range(3)]
        await asyncio.wait_for(asyncio.gather(first, *queued, *more), 5.0)
        return lanes.sizes()

    assert asyncio.run(scenario()) == [1, 5]


def test_a_lane_that_is_not_busy_never_waits_for_more() -> None:
    """A lone request, and one queued alone behind a call, are sent at once even with a
    window of a minute."""

    async def scenario() -> list[int]:
        lanes = DictLanes(delay=0.02, batch_window_seconds=60.0, batch_limit=100)
        await asyncio.wait_for(lanes.ask("c"), 5.0)
        lanes.sending.clear()
        first = asyncio.create_task(lanes.ask("c"))
        await lanes.sending.wait()
        second = asyncio.create_task(lanes.ask("c"))
        await asyncio.wait_for(asyncio.gather(first, second), 5.0)
        return lanes.sizes()

    assert asyncio.run(scenario()) == [1, 1, 1]


def test_a_lane_is_forgotten_once_its_queue_is_empty() -> None:
    """A lane's queue lives only while it has requests queued or in flight."""
    lanes = DictLanes()

    async def scenario() -> None:
        await flood(lanes, 10)
        await lanes.lanes.close()

    asyncio.run(scenario())
    assert lanes.lanes.queues == {}
