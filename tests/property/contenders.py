"""The strategies under test, and one that is wrong on purpose.

``broken`` is the classic race: get, decide, set per request, with nothing making it
atomic (the lock strategy with its lock taken out, and without the per-key queue that
would serialise one process's requests). It is correct one request at a time and
over-admits under concurrency; the concurrency properties must catch it, which shows
they can fail.
"""

from __future__ import annotations

import asyncio
from typing import Any

from api.settings import Settings
from limiter import (
    STRATEGY_NAMES,
    Clock,
    LockStrategy,
    Policy,
    PolicyDecision,
    Strategy,
    create_strategy,
)
from limiter.kv_window import Written
from limiter.quota import Quota

BROKEN = "broken"


class GetThenSetStrategy(LockStrategy):
    """The lock strategy's get, decide and set, one request at a time and unguarded."""

    name = BROKEN

    async def decide_policy(
        self,
        client_id: str,
        policy: Policy,
        cost: int = 1,
        *,
        deadline: float | None = None,
    ) -> PolicyDecision:
        deadline = asyncio.get_running_loop().time() + self.decision_timeout_seconds
        (decision,) = await self._decide_batch(Quota(client_id, policy), [cost], deadline)
        return decision

    async def _lock(self, key: str, wait: float) -> bool:
        return True

    async def _unlock(self, key: str) -> None:
        pass

    async def _write(self, key: str, read: Any, value: str, ttl_ms: int) -> Written:
        await self.counters.set(key, value, ttl=ttl_ms / 1000)
        return Written.YES


def build(name: str, settings: Settings, counters: Any, clock: Clock | None) -> Strategy:
    if name == BROKEN:
        return GetThenSetStrategy.from_settings(counters, settings, clock=clock)
    assert name in STRATEGY_NAMES
    return create_strategy(settings, counters, clock=clock, name=name)
