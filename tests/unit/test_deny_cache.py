"""The cache of exhausted quotas: alone, and as a strategy asks it before its lanes (a
strategy whose storage is a dict, so no cluster is needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from limiter import (
    Alignment,
    Decision,
    LimiterSettings,
    Quota,
    Reason,
    Strategy,
    WindowState,
    decide_batch,
    window_start,
)
from limiter.deny_cache import DenyCache

NOW_MS = 1_800_000_000_000


class DictStrategy(Strategy):
    """The pure batch rule over a dict, on a clock the test moves."""

    name = "dict"

    def __init__(self) -> None:
        self.now = NOW_MS
        super().__init__(None, LimiterSettings().strategy_config, clock=lambda: self.now)
        self.store: dict[str, WindowState] = {}
        self.batches: list[list[int]] = []

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[Decision]:
        self.batches.append(list(costs))
        key = f"{quota.client_id}:{quota.window_seconds}"
        state, decisions = decide_batch(
            self.store.get(key), self.now, costs, quota.limit, quota.window_seconds
        )
        self.store[key] = state
        return decisions

    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        return self.store.get(f"{client_id}:{window_seconds}")


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
        assert strategy.store["c:60"].count == 3
        await strategy.decide("c", 5, 60, cost=2)
        strategy.store.clear()  # a read now would find nothing: only the cache can deny
        denied = await strategy.peek("c", 5, 60)
        assert (denied.allowed, denied.remaining, denied.reason) == (
            False,
            0,
            Reason.LIMIT_REACHED,
        )

    asyncio.run(scenario())
