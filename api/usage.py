"""The current window's usage of one client, read from the counter map.

Nothing is added to the limiter for this: the key shapes are the strategies' own.

- ``lock`` and ``cas``: key ``"{id}:{window_seconds}:{window_start_ms}"``, value the count.
- ``entry_processor``: key ``"{id}:{window_seconds}"``, value ``[window_start_ms, count]``;
  a stored window other than the current one counts as unused.

The window is picked with this replica's clock. With ``entry_processor`` the member's
clock decides, so within clock skew of a window edge the two may disagree; the read is
informative and never changes a counter.
"""

from __future__ import annotations

import datetime
from typing import Any

from api.registry import ClientRecord
from limiter import wall_clock_ms, window_start
from limiter.base import window_key

__all__ = ["current_usage"]


def _iso(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def current_usage(strategy: str, counters: Any, record: ClientRecord) -> dict[str, Any]:
    now = wall_clock_ms()
    window = record.window_seconds
    start = window_start(now, window)
    used = 0
    if strategy == "entry_processor":
        stored = await counters.get(f"{record.id}:{window}")
        if isinstance(stored, list) and len(stored) == 2 and stored[0] == start:
            used = int(stored[1])
    else:
        stored = await counters.get(window_key(record.id, window, start))
        used = int(stored) if isinstance(stored, int) else 0
    return {
        "window_start": _iso(start),
        "used": used,
        "remaining": max(0, record.limit - used),
        "reset_after_seconds": -(-(start + window * 1000 - now) // 1000),
    }
