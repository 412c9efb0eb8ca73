"""The key-value window layout that the lock and cas strategies share.

Both keep a client's window as a short string under its own key in the counters map, and
both write it only if the key still holds what they read (the entry processor keeps its
windows inside the member and shares none of this), and both give a key its TTL back
after each replace (:meth:`KvWindowStrategy._restore_ttl` says why; docs/design.md,
"Storage and expiry", says it for users).
"""

from __future__ import annotations

import asyncio
from typing import Any, Unpack

from limiter.rule import Decision, WindowState
from limiter.settings import StrategyConfig
from limiter.strategy import Strategy, Wiring

__all__ = ["KvWindowStrategy", "decode_window", "encode_window", "window_key"]


def window_key(client_id: str, window_seconds: int) -> str:
    """The counter key of a client's window for the lock and cas strategies: one key per
    client and window length, whatever the alignment, holding :func:`encode_window`.

    Not the entry processor's key (``{id}:{W}``, holding ``long[]``): the layouts differ,
    so a replica started with another strategy never reads a value it cannot compare.
    """
    return f"{client_id}:{window_seconds}:w"


def encode_window(state: WindowState) -> str:
    """``"{window_start_ms}:{count}"``: the client serialises Python ints as 32-bit Java
    ints, which an epoch-millisecond start overflows, and ``replace_if_same`` needs the
    value to compare equal byte for byte; a short string does both."""
    return f"{state.window_start_ms}:{state.count}"


def decode_window(stored: object) -> WindowState | None:
    """The stored window, or None when the key holds nothing this layout wrote."""
    if not isinstance(stored, str):
        return None
    start, _, count = stored.partition(":")
    try:
        return WindowState(int(start), int(count))
    except ValueError:
        return None


class KvWindowStrategy(Strategy):
    """A strategy whose windows are :func:`window_key` entries holding
    :func:`encode_window`, written only if unchanged since read."""

    def __init__(self, counters: Any, config: StrategyConfig, **wiring: Unpack[Wiring]) -> None:
        super().__init__(counters, config, **wiring)
        self._ttl_restores: set[asyncio.Task[None]] = set()

    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        return decode_window(await self.counters.get(window_key(client_id, window_seconds)))

    async def close(self) -> None:
        """Waits for the decisions still running, then for the TTL restores they left."""
        await super().close()
        if self._ttl_restores:
            await asyncio.gather(*self._ttl_restores, return_exceptions=True)

    def ttl_ms(self, decision: Decision) -> int:
        """A counter lives until its window ends, plus the grace."""
        return decision.reset_after_ms + self.expiry_grace_ms

    async def _write_if_unchanged(
        self, key: str, read: Any, value: str, ttl_ms: int
    ) -> tuple[bool, Any]:
        """Stores ``value`` only if ``key`` still holds ``read`` (absent when None; any
        value, even one this layout cannot decode, is compared as it was read).

        Returns whether it was written and, when an absent key turned out to be there,
        the value found (saving the next attempt a ``get``).
        """
        if read is None:
            found = await self.counters.put_if_absent(key, value, ttl=ttl_ms / 1000)
            return found is None, found
        if await self.counters.replace_if_same(key, read, value):
            self._restore_ttl(key, ttl_ms)
            return True, None
        return False, None

    def _restore_ttl(self, key: str, ttl_ms: int) -> None:
        """Gives ``key`` its window's TTL again, off the decision's critical path.

        ``replace_if_same`` keeps no per-entry TTL (the entry falls back to the map's
        ``time-to-live-seconds``), and Hazelcast has no replace-with-TTL; the map-level
        TTL in hazelcast.xml bounds a key whose restore was lost.
        """
        task = asyncio.get_running_loop().create_task(self._set_ttl(key, ttl_ms))
        self._ttl_restores.add(task)
        task.add_done_callback(self._ttl_restores.discard)

    async def _set_ttl(self, key: str, ttl_ms: int) -> None:
        try:
            await self.counters.set_ttl(key, ttl_ms / 1000)
        except Exception:
            # The map-level TTL still bounds the key's life; count it, do not fail.
            self.observer.ttl_restore_failed()
