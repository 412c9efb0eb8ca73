"""Refunds on the real cluster, for every strategy: what is given back is exactly the
refunded requests, a refund reaching back before a window counts nothing in it, and only
the limits that counted an admission give it back."""

from __future__ import annotations

from typing import Any

import pytest

from api.settings import Settings
from limiter import (
    REFUND_APPLIED,
    STRATEGY_NAMES,
    Algorithm,
    Limit,
    NullObserver,
    Policy,
    Strategy,
    WindowState,
    create_strategy,
)
from limiter.policy_rule import LimitState
from limiter.refund import counted
from limiter.settings import StrategyName
from tests.loop import LoopThread

#: 30 s into a minute: every window of a minute or less started before it.
NOW_MS = 1_800_000_030_000
ADMITTED = 5
REFUNDED = 2

POLICIES = {
    "fixed_window": Policy((Limit("minute", Algorithm.FIXED_WINDOW, 10, 60),)),
    "sliding_window": Policy((Limit("minute", Algorithm.SLIDING_WINDOW, 10, 60),)),
    "gcra": Policy((Limit("smooth", Algorithm.GCRA, 10, 60, burst=9),)),
}
MIXED = Policy(
    (
        Limit("minute", Algorithm.FIXED_WINDOW, 10, 60),
        Limit("hour", Algorithm.SLIDING_WINDOW, 100, 60),
        Limit("smooth", Algorithm.GCRA, 10, 60, burst=9),
    )
)


class Outcomes(NullObserver):
    """An observer that keeps the refunds' outcomes (the other hooks do nothing)."""

    def __init__(self) -> None:
        self.refunds: list[str] = []

    def refunded(self, outcome: str) -> None:
        self.refunds.append(outcome)


def strategy_on(
    name: StrategyName, counters: Any, settings: Settings, observer: Outcomes | None = None
) -> Strategy:
    return create_strategy(settings, counters, clock=lambda: NOW_MS, name=name, observer=observer)


async def admit(strategy: Strategy, client: str, policy: Policy, n: int) -> list[tuple[int, ...]]:
    """Admits ``n`` requests of cost 1; the limits that counted each one."""
    counted_by = []
    for _ in range(n):
        decision = await strategy.decide_policy(client, policy)
        assert decision.allowed
        counted_by.append(counted(decision))
    return counted_by


async def stored(strategy: Strategy, client: str, policy: Policy) -> tuple[LimitState | None, ...]:
    states, _ = await strategy.stored_states(client, policy)
    return states


@pytest.mark.parametrize("algorithm", sorted(POLICIES))
@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_refunding_k_of_n_admissions_leaves_n_minus_k_used(
    strategy_name: StrategyName,
    algorithm: str,
    counters: Any,
    loop: LoopThread,
    base_settings: Settings,
) -> None:
    """Admit N, refund k (no time elapsed): the stored usage is N - k, every refund is
    applied, and the observer hears each one."""
    observer = Outcomes()
    strategy = strategy_on(strategy_name, counters, base_settings, observer)
    policy = POLICIES[algorithm]

    async def scenario() -> tuple[list[bool], int]:
        counted_by = await admit(strategy, "c", policy, ADMITTED)
        applied = [
            await strategy.refund_policy("c", policy, 1, counted_by[i], elapsed_ms=0)
            for i in range(REFUNDED)
        ]
        usage = await strategy.peek_policy("c", policy)
        await strategy.close()
        return applied, usage.decisions[0].remaining

    applied, remaining = loop.run(scenario())
    assert applied == [True] * REFUNDED
    assert remaining == 10 - (ADMITTED - REFUNDED)
    assert observer.refunds == [REFUND_APPLIED] * REFUNDED


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_a_refund_reaching_back_before_the_windows_changes_nothing(
    strategy_name: StrategyName, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A refund whose elapsed time reaches back before the windows started (and beyond a
    GCRA emission interval) gives back nothing: the states stay as the admissions left
    them, and the refund still counts as applied (nothing to give back)."""
    strategy = strategy_on(strategy_name, counters, base_settings)

    async def scenario() -> tuple[
        bool, tuple[LimitState | None, ...], tuple[LimitState | None, ...]
    ]:
        counted_by = await admit(strategy, "c", MIXED, 3)
        before = await stored(strategy, "c", MIXED)
        applied = await strategy.refund_policy("c", MIXED, 1, counted_by[-1], elapsed_ms=30_001)
        after = await stored(strategy, "c", MIXED)
        await strategy.close()
        return applied, before, after

    applied, before, after = loop.run(scenario())
    assert applied
    assert after == before
    assert before[0] == WindowState(NOW_MS - 30_000, 3)


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_only_the_limits_that_counted_give_back(
    strategy_name: StrategyName, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A shadow limit that would have denied counted nothing: refunding that admission
    gives back the enforced limit only, and the shadow limit keeps its count."""
    policy = Policy(
        (
            Limit("burst", Algorithm.FIXED_WINDOW, 10, 60),
            Limit("trial", Algorithm.FIXED_WINDOW, 2, 60, shadow=True),
        )
    )
    strategy = strategy_on(strategy_name, counters, base_settings)

    async def scenario() -> tuple[list[tuple[int, ...]], tuple[LimitState | None, ...]]:
        counted_by = await admit(strategy, "c", policy, 3)
        await strategy.refund_policy("c", policy, 1, counted_by[-1], elapsed_ms=0)
        after = await stored(strategy, "c", policy)
        await strategy.close()
        return counted_by, after

    counted_by, after = loop.run(scenario())
    assert counted_by == [(0, 1), (0, 1), (0,)]
    start = NOW_MS - 30_000
    assert after == (WindowState(start, 2), WindowState(start, 2))


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_a_refund_reopens_a_window_the_deny_cache_remembered(
    strategy_name: StrategyName, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A fixed window left exhausted is remembered by the deny cache; a refund makes it
    forget, so the next request is decided by the cluster and admitted."""
    policy = Policy((Limit("minute", Algorithm.FIXED_WINDOW, 2, 60),))
    strategy = strategy_on(strategy_name, counters, base_settings)

    async def scenario() -> tuple[bool, bool, bool]:
        counted_by = await admit(strategy, "c", policy, 2)
        denied = (await strategy.decide_policy("c", policy)).allowed
        await strategy.refund_policy("c", policy, 1, counted_by[-1], elapsed_ms=0)
        again = (await strategy.decide_policy("c", policy)).allowed
        after = (await strategy.decide_policy("c", policy)).allowed
        await strategy.close()
        return denied, again, after

    assert loop.run(scenario()) == (False, True, False)
