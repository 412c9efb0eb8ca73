"""The strategies under test, and one that is wrong on purpose.

``broken`` is the classic race: get, decide, set, with nothing making it atomic (the
lock strategy with its lock taken out). It is
correct one request at a time and over-admits under concurrency; the concurrency
properties must catch it, which shows they can fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from limiter import STRATEGY_NAMES, Clock, LockStrategy, Settings, Strategy, create_strategy

BROKEN = "broken"


class GetThenSetStrategy(LockStrategy):
    """The lock strategy without its lock: the same get, decide and set, unguarded."""

    name = BROKEN

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        yield


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
