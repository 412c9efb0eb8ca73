"""The seed's path, repaired: an IMap lock around get-decide-set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from limiter.base import Strategy, window_key
from limiter.errors import LockNotAcquired
from limiter.rule import Decision, WindowState, decide, window_start

__all__ = ["LockStrategy"]


class LockStrategy(Strategy):
    """``try_lock(lease)`` → ``get`` → ``set(ttl)`` → ``unlock``: four round trips.

    Unlike the original, a lock that cannot be had is an error, never an unlocked
    decision; the lock always has a lease, so a replica that dies holding it frees it
    after ``lock_lease_seconds``. The asyncio client owns a lock per task: lock and
    unlock run in one task created for each decision, so two concurrent decisions of one
    process exclude each other like two processes do.
    Clock: this replica's (or the injected one).
    """

    name = "lock"

    def __init__(
        self,
        counters: Any,
        *,
        lock_lease_seconds: float = 2.0,
        lock_wait_seconds: float = 0.9,
        **common: Any,
    ) -> None:
        super().__init__(counters, **common)
        self.lock_lease_seconds = lock_lease_seconds
        self.lock_wait_seconds = lock_wait_seconds
        self._in_flight: set[asyncio.Task[Decision]] = set()

    async def _decide(self, client_id: str, limit: int, window_seconds: int, cost: int) -> Decision:
        # Lock, read, write and unlock run in one task of their own, shielded from the
        # caller: a decision timeout or a caller that hangs up cancels the wait for the
        # answer, never the unlock (nor a lock the member grants a moment later).
        task = asyncio.get_running_loop().create_task(
            self._locked_decide(client_id, limit, window_seconds, cost)
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    async def _locked_decide(
        self, client_id: str, limit: int, window_seconds: int, cost: int
    ) -> Decision:
        now = self.now_ms()
        start = window_start(now, window_seconds)
        key = window_key(client_id, window_seconds, start)
        async with self._exclusive(key):
            count = await self.counters.get(key)
            state = None if count is None else WindowState(start, count)
            new_state, decision = decide(state, now, cost, limit, window_seconds)
            if decision.allowed:
                await self.counters.set(key, new_state.count, ttl=self.ttl_ms(decision) / 1000)
            return decision

    async def close(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """Holds the key's lock around the body: acquired and released in this task."""
        asked = time.monotonic()
        locked = await self.counters.try_lock(
            key, lease_time=self.lock_lease_seconds, timeout=self.lock_wait_seconds
        )
        self.observer.lock_waited(time.monotonic() - asked)
        if not locked:
            raise LockNotAcquired(f"lock on {key!r} not free within {self.lock_wait_seconds}s")
        try:
            yield
        finally:
            await self.counters.unlock(key)
