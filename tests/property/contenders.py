"""The strategies under test, and one that is wrong on purpose.

``broken`` is the classic race: get, decide, set, with nothing making it atomic. It is
correct one request at a time and over-admits under concurrency; the concurrency
properties must catch it, which shows they can fail.
"""

from __future__ import annotations

from typing import Any

from limiter import STRATEGY_NAMES, Clock, Decision, Settings, Strategy, create_strategy
from limiter.base import window_key
from limiter.rule import WindowState, decide, window_start

BROKEN = "broken"


class GetThenSetStrategy(Strategy):
    name = BROKEN

    async def _decide(self, client_id: str, limit: int, window_seconds: int, cost: int) -> Decision:
        now = self.now_ms()
        start = window_start(now, window_seconds)
        key = window_key(client_id, window_seconds, start)
        count = await self.counters.get(key)
        state = None if count is None else WindowState(start, count)
        new_state, decision = decide(state, now, cost, limit, window_seconds)
        if decision.allowed:
            await self.counters.set(key, new_state.count, ttl=self.ttl_ms(decision) / 1000)
        return decision


def build(name: str, settings: Settings, counters: Any, clock: Clock | None) -> Strategy:
    if name == BROKEN:
        return GetThenSetStrategy(
            counters,
            clock=clock,
            decision_timeout_seconds=settings.decision_timeout_seconds,
            expiry_grace_seconds=settings.expiry_grace_seconds,
        )
    assert name in STRATEGY_NAMES
    return create_strategy(settings, counters, clock=clock, name=name)
