"""The cache of exhausted quotas: alone, and as a strategy asks it before its lanes (a
strategy whose storage is a dict, so no cluster is needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from limiter import (
    Algorithm,
    Decision,
    Limit,
    LimiterSettings,
    LimitState,
    Policy,
    PolicyDecision,
    Quota,
    Reason,
    Strategy,
    window_start,
)
from limiter.deny_cache import DenyCache
from limiter.policy_rule import decide_batch

NOW_MS = 1_800_000_000_000


class DictStrategy(Strategy):
    """The pure batch rule over a dict, on a clock the test moves."""

    name = "dict"

    def __init__(self) -> None:
        self.now = NOW_MS
        super().__init__(None, LimiterSettings().strategy_config, clock=lambda: self.now)
        #: client -> {slot: state}
        self.store: dict[str, dict[int, LimitState]] = {}
        self.batches: list[list[int]] = []

    def states(self, client_id: str, policy: Policy) -> tuple[LimitState | None, ...]:
        stored = self.store.get(client_id, {})
        return tuple(stored.get(limit.slot) for limit in policy.limits)

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        self.batches.append(list(costs))
        policy = quota.policy
        states, decisions = decide_batch(
            self.states(quota.client_id, policy), self.now, costs, policy
        )
        if any(d.allowed for d in decisions):
            self.store[quota.client_id] = {
                limit.slot: state
                for limit, state in zip(policy.limits, states, strict=True)
                if state is not None
            }
        return decisions

    async def stored_states(
        self, client_id: str, policy: Policy
    ) -> tuple[tuple[LimitState | None, ...], int]:
        return self.states(client_id, policy), self.now


async def flood(strategy: Strategy, requests: int, limit: int) -> list[Decision]:
    return list(await asyncio.gather(*(strategy.decide("c", limit, 60) for _ in range(requests))))


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
    """The cache is keyed by the quota: a client whose limit was raised is asked about
    again straight away, and admitted."""
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
        cache.remember(Quota.single(client, 1, 60), 10_000)
    assert len(cache) == 2
    assert cache.denial(Quota.single("a", 1, 60), 1, 0) is None
    assert cache.denial(Quota.single("c", 1, 60), 1, 0) is not None


def test_a_cached_denial_never_reports_a_window_end_before_the_true_one() -> None:
    """The cache stops denying a round trip early (counted from the send) but reports the
    rest of the window counted from the answer's arrival, so Retry-After never points
    before the window's end."""
    cache = DenyCache(4)
    quota = Quota.single("a", 1, 60)
    # Sent at 0, answered at 40, the member said 1,000 ms were left when it decided.
    cache.remember(quota, 0 + 1000, 40 + 1000)
    denial = cache.denial(quota, 1, 500)
    assert denial is not None and denial.decisions[0].reset_after_ms == 540
    assert denial.retry_after_ms == 540
    assert cache.denial(quota, 1, 1000) is None


def test_a_peek_reads_the_window_writes_nothing_and_uses_the_deny_cache() -> None:
    """A peek reports the stored usage, opens no window, and once the quota is exhausted
    is answered by the deny cache without a read."""
    strategy = DictStrategy()

    async def scenario() -> None:
        fresh = await strategy.peek("c", 5, 60)
        assert (fresh.allowed, fresh.remaining) == (True, 5)
        assert strategy.store == {}
        await strategy.decide("c", 5, 60, cost=3)
        looked = await strategy.peek("c", 5, 60)
        assert (looked.allowed, looked.remaining, looked.reason) == (True, 2, Reason.ADMITTED)
        (state,) = strategy.store["c"].values()
        assert state.count == 3  # type: ignore[union-attr]
        await strategy.decide("c", 5, 60, cost=2)
        strategy.store.clear()  # a read now would find nothing: only the cache can deny
        denied = await strategy.peek("c", 5, 60)
        assert (denied.allowed, denied.remaining, denied.reason) == (
            False,
            0,
            Reason.LIMIT_REACHED,
        )

    asyncio.run(scenario())


BURST = Limit("burst", Algorithm.GCRA, 2, 60)
DAILY = Limit("daily", Algorithm.FIXED_WINDOW, 3, 86_400)
HOURLY = Limit("hourly", Algorithm.SLIDING_WINDOW, 2, 3600)


def test_only_an_exhausted_enforced_fixed_window_is_cached() -> None:
    """A GCRA or sliding-window limit makes room again as time passes, and a shadow limit
    never denies, so none of them is remembered: the cluster is asked every time."""
    for policy in (
        Policy((BURST,)),
        Policy((HOURLY,)),
        Policy((Limit("try", Algorithm.FIXED_WINDOW, 1, 60, shadow=True), BURST)),
    ):
        strategy = DictStrategy()

        async def scenario(policy: Policy = policy, strategy: DictStrategy = strategy) -> None:
            for _ in range(4):
                await strategy.decide_policy("c", policy)
            assert len(strategy.batches) == 4
            assert len(strategy.deny_cache) == 0

        asyncio.run(scenario())


def test_a_cached_denial_of_a_policy_names_the_exhausted_window() -> None:
    """With a daily fixed window exhausted, later requests are denied locally by it, with
    its reset as Retry-After, and the other limits reported as last seen (usage only)."""
    strategy = DictStrategy()
    policy = Policy((BURST, DAILY))

    async def scenario() -> None:
        for _ in range(3):
            strategy.now += 60_000  # the burst limit refills in between
            assert (await strategy.decide_policy("c", policy)).allowed
        operations = len(strategy.batches)
        strategy.now += 60_000
        denied = await strategy.decide_policy("c", policy)
        assert len(strategy.batches) == operations
        assert (denied.allowed, denied.reason, denied.denied_by) == (
            False,
            Reason.LIMIT_REACHED,
            1,
        )
        assert denied.retry_after_ms == denied.decisions[1].reset_after_ms > 0
        assert denied.decisions[0].allowed and denied.decisions[0].limit == 2

    asyncio.run(scenario())


def test_a_cached_denial_forgets_another_limits_cost_verdict() -> None:
    """A cached denial is the exhausted window's alone: another limit's earlier
    cost-over-limit answer does not turn a small request's denial into one."""
    cache = DenyCache(4)
    policy = Policy((BURST, DAILY))
    quota = Quota("c", policy)
    earlier = PolicyDecision(
        False,
        Reason.COST_OVER_LIMIT,
        (
            Decision(False, 2, 1, 30_000, Reason.COST_OVER_LIMIT),
            Decision(True, 3, 0, 50_000, Reason.ADMITTED),
        ),
        0,
        (),
        0,
        None,
    )
    cache.remember_decision(quota, earlier, 0, 0)
    denial = cache.denial(quota, 1, 10_000)
    assert denial is not None
    assert (denial.reason, denial.denied_by, denial.retry_after_ms) == (
        Reason.LIMIT_REACHED,
        1,
        40_000,
    )
    assert denial.decisions[0].reset_after_ms == 20_000
