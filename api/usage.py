"""The current window's usage of one client, as its strategy stored it.

The window in progress is the stored one while it has not ended (the rule's own test,
:func:`limiter.decide`); a client with no open window has used nothing. The read uses
this replica's clock; with ``entry_processor`` the member's clock decides, so within
clock skew of a window's end the two may disagree. The read never changes a counter.
"""

from __future__ import annotations

import datetime
from typing import Any

from api.registry import ClientRecord
from limiter import Strategy, opening_start, wall_clock_ms

__all__ = ["current_usage"]


def _iso(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def current_usage(strategy: Strategy, record: ClientRecord) -> dict[str, Any]:
    now = wall_clock_ms()
    window_ms = record.window_seconds * 1000
    stored = await strategy.stored_window(record.id, record.window_seconds)
    if stored is not None and now < stored.window_start_ms + window_ms:
        start, used = stored.window_start_ms, stored.count
    else:
        # No window open: the next request opens one (now, or at the clock's edge).
        start, used = opening_start(now, record.window_seconds, record.window_alignment), 0
    return {
        "window_start": _iso(start),
        "used": used,
        "remaining": max(0, record.limit - used),
        "reset_after_seconds": -(-(start + window_ms - max(now, start)) // 1000),
    }
