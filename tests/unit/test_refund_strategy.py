"""What every strategy's refund_policy does around its own atomic step (a strategy over a
dict, so no cluster is needed): the rule on the strategy's clock with the elapsed time,
the deny cache forgotten, a late step reported lost and not raised, and caller errors."""

from __future__ import annotations

import asyncio

import pytest

from limiter import (
    REFUND_APPLIED,
    REFUND_LOST,
    Algorithm,
    Limit,
    LimitState,
    NullObserver,
    Policy,
    Quota,
    WindowState,
)
from limiter.refund import refund
from limiter.strategy import Elapsed
from tests.unit.test_deny_cache import NOW_MS, DictStrategy

POLICY = Policy((Limit("minute", Algorithm.FIXED_WINDOW, 2, 60),))


class Recorder(NullObserver):
    """Keeps the refunds' outcomes."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def refunded(self, outcome: str) -> None:
        self.outcomes.append(outcome)


class RefundingDictStrategy(DictStrategy):
    """The dict strategy with the refund rule as its atomic step (optionally stalled)."""

    def __init__(self, stall_seconds: float = 0.0) -> None:
        super().__init__()
        self.stall_seconds = stall_seconds
        recorder = Recorder()
        self.observer = recorder
        self.outcomes = recorder.outcomes
        self.steps = 0

    async def _refund(
        self, quota: Quota, cost: int, counted: tuple[int, ...], elapsed: Elapsed, deadline: float
    ) -> bool:
        await asyncio.sleep(self.stall_seconds)
        policy = quota.policy
        states = self.states(quota.client_id, policy)
        given = refund(states, self.now, policy, cost, counted, self.now - elapsed())
        self.store[quota.client_id] = {
            limit.slot: state
            for limit, state in zip(policy.limits, given, strict=True)
            if state is not None
        }
        self.steps += 1
        return True


def test_a_refund_reopens_a_window_the_deny_cache_remembered() -> None:
    """An exhausted window is denied locally; a refund gives one back and makes the cache
    forget the quota, so the next request is admitted."""
    strategy = RefundingDictStrategy()

    async def scenario() -> list[bool]:
        first = await strategy.decide_policy("c", POLICY)
        await strategy.decide_policy("c", POLICY)
        denied = await strategy.decide_policy("c", POLICY)
        assert await strategy.refund_policy("c", POLICY, 1, (0,), elapsed_ms=0)
        assert first.allowed
        return [denied.allowed, (await strategy.decide_policy("c", POLICY)).allowed]

    assert asyncio.run(scenario()) == [False, True]
    assert strategy.outcomes == [REFUND_APPLIED]


def test_the_elapsed_time_and_the_wait_set_sent_ms() -> None:
    """``sent_ms`` is the strategy's now less the caller's elapsed time: one reaching back
    before the window started gives nothing back."""
    strategy = RefundingDictStrategy()
    start = NOW_MS - NOW_MS % 60_000

    async def scenario() -> tuple[LimitState, LimitState]:
        await strategy.decide_policy("c", POLICY)
        reach = strategy.now - start
        await strategy.refund_policy("c", POLICY, 1, (0,), elapsed_ms=reach + 1)
        kept = strategy.store["c"][POLICY.limits[0].slot]
        await strategy.refund_policy("c", POLICY, 1, (0,), elapsed_ms=reach)
        return kept, strategy.store["c"][POLICY.limits[0].slot]

    assert asyncio.run(scenario()) == (WindowState(start, 1), WindowState(start, 0))


def test_a_refund_not_done_by_its_deadline_is_lost_not_raised() -> None:
    """A step that misses the deadline answers False and is counted lost; the step still
    runs to its end (never cut half-way), and close() waits for it."""
    strategy = RefundingDictStrategy(stall_seconds=0.05)

    async def scenario() -> bool:
        deadline = asyncio.get_running_loop().time() + 0.01
        applied = await strategy.refund_policy(
            "c", POLICY, 1, (0,), elapsed_ms=0, deadline=deadline
        )
        await strategy.close()
        return applied

    assert asyncio.run(scenario()) is False
    assert strategy.outcomes == [REFUND_LOST]
    assert strategy.steps == 1


def test_nothing_counted_is_applied_without_a_step() -> None:
    """A cost of 0 or no counted limit gives nothing back and needs no atomic step."""
    strategy = RefundingDictStrategy()

    async def scenario() -> list[bool]:
        return [
            await strategy.refund_policy("c", POLICY, 0, (0,), elapsed_ms=0),
            await strategy.refund_policy("c", POLICY, 1, (), elapsed_ms=0),
        ]

    assert asyncio.run(scenario()) == [True, True]
    assert strategy.steps == 0


def test_refund_caller_errors_are_refused() -> None:
    """A negative cost or elapsed time, and a limit outside the policy, are caller errors."""
    strategy = RefundingDictStrategy()

    async def call(cost: int, counted: tuple[int, ...], elapsed_ms: int) -> bool:
        return await strategy.refund_policy("c", POLICY, cost, counted, elapsed_ms=elapsed_ms)

    for cost, counted, elapsed_ms in ((-1, (0,), 0), (1, (0,), -1), (1, (1,), 0)):
        with pytest.raises(ValueError):
            asyncio.run(call(cost, counted, elapsed_ms))
