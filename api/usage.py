"""The current window's usage of one client, as ``GET /bucket/{id}`` shows it.

The strategy reads its own storage and the rule picks the window
(:meth:`limiter.Strategy.current_window`); a client with no open window has used nothing.
The read uses this replica's clock; with ``entry_processor`` the member's clock decides,
so within clock skew of a window's end the two may disagree. It never changes a counter.
"""

from __future__ import annotations

import datetime
from typing import Any

from limiter import Strategy
from registry import ClientRecord

__all__ = ["current_usage"]


def _iso(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def current_usage(strategy: Strategy, record: ClientRecord) -> dict[str, Any]:
    window = await strategy.current_window(
        record.id, record.window_seconds, record.window_alignment
    )
    now = strategy.now_ms()  # the clock current_window picked the window with
    end = window.window_start_ms + record.window_seconds * 1000
    return {
        "window_start": _iso(window.window_start_ms),
        "used": window.count,
        "remaining": max(0, record.limit - window.count),
        "reset_after_seconds": -(-(end - max(now, window.window_start_ms)) // 1000),
    }
