"""Lock-free: read, decide, then write only if nobody wrote in between."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from limiter.base import Strategy, contended, window_key
from limiter.rule import Decision, WindowState, decide_batch, window_start

__all__ = ["CasStrategy"]


class CasStrategy(Strategy):
    """``get`` → ``put_if_absent(ttl)`` or ``replace_if_same``, retried with jittered
    backoff, once per batch of queued requests.

    Two round trips when uncontended. A lost race costs one more round trip and a short
    random pause (up to ``cas_backoff_max_ms``, doubling per attempt); a failed
    ``put_if_absent`` returns the winner's value, so the next attempt skips the ``get``.
    A batch that runs out of attempts, or of time, is denied as contended: contention is
    never an admission.

    Expiry: ``replace_if_same`` keeps no per-entry TTL (the entry falls back to the
    map's ``time-to-live-seconds``), and Hazelcast has no replace-with-TTL. So after each
    successful replace the key's TTL is restored with ``set_ttl``, off the decision's
    critical path; the map-level TTL in hazelcast.xml bounds a key whose restore was lost.
    Clock: this replica's (or the injected one).
    """

    name = "cas"

    def __init__(
        self,
        counters: Any,
        *,
        cas_max_attempts: int = 32,
        cas_backoff_max_ms: float = 8.0,
        **common: Any,
    ) -> None:
        super().__init__(counters, **common)
        self.max_attempts = cas_max_attempts
        self.backoff_max_ms = cas_backoff_max_ms

    async def _decide_batch(
        self,
        client_id: str,
        limit: int,
        window_seconds: int,
        costs: Sequence[int],
        deadline: float,
    ) -> list[Decision]:
        loop = asyncio.get_running_loop()
        # The value a lost put_if_absent returned, and the key it belongs to.
        known_key: str | None = None
        known: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            now = self.now_ms()
            start = window_start(now, window_seconds)
            key = window_key(client_id, window_seconds, start)
            current = known if key == known_key else await self.counters.get(key)
            known_key = None
            state = None if current is None else WindowState(start, current)
            new_state, decisions = decide_batch(state, now, costs, limit, window_seconds)
            if new_state.count == (current or 0):
                self.observer.cas_attempts(attempt)
                return decisions  # nothing admitted: nothing to write
            written, found = await self._write_if_unchanged(
                key, current, new_state.count, self.ttl_ms(decisions[0])
            )
            if written:
                self.observer.cas_attempts(attempt)
                return decisions
            if found is not None:
                known_key, known = key, found
            pause = random.uniform(0, min(self.backoff_max_ms, 2.0 ** (attempt - 1))) / 1000
            if loop.time() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        self.observer.cas_attempts(attempt)
        self.observer.contended("cas_exhausted")
        return [contended(limit)] * len(costs)
