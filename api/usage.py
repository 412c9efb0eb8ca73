"""The current usage of each of a client's limits, as ``GET /bucket/{id}`` shows it.

One read of the client's stored states (:meth:`limiter.Strategy.stored_states`, which
also gives the clock the strategy decides with: this replica's for ``lock`` and ``cas``,
the owning member's for ``entry_processor``), then the peek of the combined rule on them
(:func:`limiter.policy_rule.peek`, what :meth:`limiter.Strategy.peek_policy` runs): so
every limit's numbers come from the same states at the same instant, in one round trip,
and nothing is counted or written. The deny cache is not asked: it may answer a denial
while the stored states say more.

Per limit (``usage.limits``, in policy order): ``remaining`` (requests of cost 1 that
would pass now), ``reset_after_seconds`` (rounded up: until the limit is whole again),
``used`` and ``window_start``:

- ``fixed_window``: ``used`` is the open window's count (it can exceed a limit that was
  lowered), ``window_start`` the start of the window a request now counts in (a client
  with no open window has used nothing in a window that would open now);
- ``sliding_window``: ``used`` is ``limit - remaining``, the rule's weighted estimate of
  the trailing window; ``window_start`` the clock-aligned window it counts in now (the
  previous one is weighted in too);
- ``gcra``: ``used`` is ``burst + 1 - remaining``, how much of what may pass at once is
  taken (its ``remaining`` counts out of ``burst + 1``, not out of ``limit``);
  ``window_start`` is ``null``: a GCRA limit has no window, only a theoretical arrival
  time.

The top-level ``window_start``, ``used``, ``remaining`` and ``reset_after_seconds`` are
the first limit's, as they were for a client of one limit.
"""

from __future__ import annotations

import datetime
from typing import Any

from limiter import Algorithm, Limit, Strategy, policy_rule
from limiter.gcra import GcraState
from limiter.policy_rule import LimitState
from limiter.rule import Decision, WindowState, open_window
from limiter.sliding_window import SlidingWindowState, roll
from registry import ClientRecord

__all__ = ["current_usage"]


def _iso(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _window(limit: Limit, state: LimitState | None, now_ms: int) -> tuple[str | None, int | None]:
    """The limit's window start as shown and, for a fixed window, its count."""
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        assert limit.alignment is not None
        fixed = state if isinstance(state, WindowState) else None
        window = open_window(fixed, now_ms, limit.window_seconds, limit.alignment)
        return _iso(window.window_start_ms), window.count
    if limit.algorithm is Algorithm.SLIDING_WINDOW:
        sliding = state if isinstance(state, SlidingWindowState) else None
        return _iso(roll(sliding, now_ms, limit.window_seconds).window_start_ms), None
    assert state is None or isinstance(state, GcraState)
    return None, None


def _limit_usage(
    limit: Limit, state: LimitState | None, now_ms: int, decision: Decision
) -> dict[str, Any]:
    window_start, count = _window(limit, state, now_ms)
    if count is None:
        whole = limit.burst + 1 if limit.algorithm is Algorithm.GCRA else limit.limit
        count = max(0, whole - decision.remaining)
    return {
        "name": limit.name,
        "algorithm": limit.algorithm.value,
        "limit": limit.limit,
        "window_seconds": limit.window_seconds,
        "shadow": limit.shadow,
        "window_start": window_start,
        "used": count,
        "remaining": decision.remaining,
        "reset_after_seconds": decision.reset_after_seconds,
    }


async def current_usage(strategy: Strategy, record: ClientRecord) -> dict[str, Any]:
    """The ``usage`` object of ``GET /bucket/{id}`` (see the module's docstring)."""
    policy = record.policy
    states, now_ms = await strategy.stored_states(record.id, policy)
    answer = policy_rule.peek(states, now_ms, policy)
    limits = [
        _limit_usage(limit, state, now_ms, decision)
        for limit, state, decision in zip(policy.limits, states, answer.decisions, strict=True)
    ]
    first = limits[0]
    return {
        "window_start": first["window_start"],
        "used": first["used"],
        "remaining": first["remaining"],
        "reset_after_seconds": first["reset_after_seconds"],
        "limits": limits,
    }
