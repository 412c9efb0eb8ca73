"""The sliding-window rule: the weighted two-window approximation, in one place.

Why: a fixed window lets up to twice its limit through across a window edge (see
:mod:`limiter.rule`). Counting exactly over the last W needs a log of every request; this
rule keeps three numbers per client instead and weights the previous window by how much of
it the trailing W still overlaps, as Cloudflare describes for its rate limiting.

Windows are clock-aligned: window k covers ``[k*W, (k+1)*W)`` in epoch milliseconds. The
state is the current window's start, its count and the previous window's count. At
``now``, with ``elapsed = now - start`` (0 when the stored window starts later, see
below), the estimate of the trailing W is ``previous * (W - elapsed) / W + count``.

- **Admit**: a request of ``cost`` passes when ``estimate + cost <= limit``, decided in
  integers, all in milliseconds: ``previous * (W - elapsed) + (count + cost) * W <=
  limit * W``. It is computed as ``cost <= room`` (below), which is the same inequality
  but never multiplies a stored count that could be large by anything; so with
  ``limit * W <= 2**61`` (checked: a limit of 1e9 fits windows up to 26 days) no Java
  ``long`` overflows. A denied request changes nothing; a cost above the limit is always
  denied (``COST_OVER_LIMIT``).
- **remaining**: ``room``, the largest whole n with ``previous * (W - elapsed) + (count +
  n) * W <= limit * W`` (0 if none), after the request when it is admitted: how many
  requests of cost 1 would still pass now.
- **reset_after_ms**: the time until the whole limit is available again (the estimate is
  0): the end of the next window when the current one counts something, the end of the
  current one when only the previous one does, 0 when nothing is counted.
- **retry_after_ms** (a ``LIMIT_REACHED`` denial only): the time until a request of the
  same cost would pass, exactly, as the previous window's weight decays or the windows
  roll. The estimate never rises while nothing is admitted, so that time is the first
  millisecond at which it passes.

A window that ended rolls forward: the new window is the one that holds ``now``, and its
previous count is the stored count when the stored window is the one just before it,
otherwise 0. A stored window that starts *after* ``now`` (its writer's clock was ahead)
is kept with ``elapsed = 0``, as the fixed-window rule keeps it; its times are measured
from its real start, so they can exceed 2W by the clocks' difference.

Error against an exact log: each window alone never counts more than the limit, but the
previous window's requests may all sit at its very end while the rule assumes them spread
evenly. At ``elapsed`` into a window the trailing W can hold up to ``limit + previous *
elapsed / W`` (below ``2 * limit``). Random streams went up to 28 % over the limit, and
at most 1.5 % on average (measured in ``tests/unit/test_sliding_window.py``; see
``docs/design.md``, Algorithms).

The Java mirror is ``hazelcast/src/main/java/ratelimit/processor/SlidingWindowRule.java``;
both run ``tests/vectors/sliding_window.csv`` and ``sliding_window_batch.csv``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from limiter.rule import Decision, Reason, window_start

__all__ = [
    "MAX_LIMIT_TIMES_WINDOW_MS",
    "SlidingWindowState",
    "decide",
    "decide_batch",
    "refund",
    "roll",
]

#: The largest ``limit * window_ms``: every product and sum of the rule stays below 2**63.
MAX_LIMIT_TIMES_WINDOW_MS = 2**61


@dataclasses.dataclass(frozen=True, slots=True)
class SlidingWindowState:
    """What is stored per client: the current window and the two counts."""

    window_start_ms: int
    count: int
    previous_count: int


def _window_ms(cost: int, limit: int, window_seconds: int) -> int:
    if cost < 1 or limit < 1 or window_seconds < 1:
        raise ValueError(
            "cost, limit and window_seconds must be positive, "
            f"got {cost}, {limit}, {window_seconds}"
        )
    window_ms = window_seconds * 1000
    if window_ms > MAX_LIMIT_TIMES_WINDOW_MS // limit:
        raise ValueError(f"limit * window_ms must be at most 2**61, got {limit} * {window_ms}")
    return window_ms


def roll(state: SlidingWindowState | None, now_ms: int, window_seconds: int) -> SlidingWindowState:
    """The state a request at ``now_ms`` sees: the stored one until its window ends (kept
    when it starts later), otherwise the window holding ``now_ms``, whose previous count is
    the stored count if the stored window is the one just before it, else 0."""
    window_ms = window_seconds * 1000
    if state is None:
        return SlidingWindowState(window_start(now_ms, window_seconds), 0, 0)
    if now_ms < state.window_start_ms + window_ms:
        return state
    start = window_start(now_ms, window_seconds)
    previous = state.count if state.window_start_ms >= start - window_ms else 0
    return SlidingWindowState(start, 0, previous)


def _room(state: SlidingWindowState, now_ms: int, limit: int, window_ms: int) -> int:
    """The largest n >= 0 with ``previous * (W - elapsed) + (count + n) * W <= limit * W``,
    or 0 when there is none."""
    weight = window_ms - max(0, now_ms - state.window_start_ms)
    budget = limit * window_ms
    if state.previous_count > budget // weight:
        return 0
    return max(0, (budget - state.previous_count * weight) // window_ms - state.count)


def _first_elapsed(weighted: int, free: int, window_ms: int) -> int | None:
    """The first elapsed e in ``[0, W)`` with ``weighted * (W - e) <= free * W``, or None."""
    if free < 0:
        return None
    if weighted == 0:
        return 0
    span = free * window_ms // weighted
    if span < 1:
        return None
    return max(0, window_ms - span)


def _passes_at(state: SlidingWindowState, cost: int, limit: int, window_ms: int) -> int:
    """The first instant at which a request of ``cost <= limit`` passes, if nothing else
    is admitted: in this window, in the next one (where this count is the previous one),
    or at the start of the one after, where nothing is counted."""
    start = state.window_start_ms
    elapsed = _first_elapsed(state.previous_count, limit - state.count - cost, window_ms)
    if elapsed is not None:
        return start + elapsed
    elapsed = _first_elapsed(state.count, limit - cost, window_ms)
    if elapsed is not None:
        return start + window_ms + elapsed
    return start + 2 * window_ms


def _reset_after_ms(state: SlidingWindowState, now_ms: int, window_ms: int) -> int:
    """The time until the estimate is 0, i.e. the whole limit passes again."""
    if state.count > 0:
        return state.window_start_ms + 2 * window_ms - now_ms
    if state.previous_count > 0:
        return state.window_start_ms + window_ms - now_ms
    return 0


def decide(
    state: SlidingWindowState | None,
    now_ms: int,
    cost: int,
    limit: int,
    window_seconds: int,
) -> tuple[SlidingWindowState, Decision]:
    """Applies one request to ``state``; returns the state to store and the decision.

    The state returned with a denial is ``state`` rolled to ``now_ms``: storing it or not
    decides every later request alike.
    """
    window_ms = _window_ms(cost, limit, window_seconds)
    current = roll(state, now_ms, window_seconds)
    room = _room(current, now_ms, limit, window_ms)
    if cost > limit:
        reset = _reset_after_ms(current, now_ms, window_ms)
        return current, Decision(False, limit, room, reset, Reason.COST_OVER_LIMIT)
    if cost <= room:
        admitted = dataclasses.replace(current, count=current.count + cost)
        reset = _reset_after_ms(admitted, now_ms, window_ms)
        return admitted, Decision(True, limit, room - cost, reset, Reason.ADMITTED)
    retry = _passes_at(current, cost, limit, window_ms) - now_ms
    reset = _reset_after_ms(current, now_ms, window_ms)
    return current, Decision(False, limit, room, reset, Reason.LIMIT_REACHED, retry)


def decide_batch(
    state: SlidingWindowState | None,
    now_ms: int,
    costs: Sequence[int],
    limit: int,
    window_seconds: int,
) -> tuple[SlidingWindowState, list[Decision]]:
    """Applies the requests of ``costs`` in arrival order, as :func:`decide` would one by
    one at the same ``now_ms``; returns the final state and one decision per request."""
    if not costs:
        raise ValueError("a batch needs at least one request")
    decisions = []
    for cost in costs:
        state, decision = decide(state, now_ms, cost, limit, window_seconds)
        decisions.append(decision)
    assert state is not None
    return state, decisions


def refund(
    state: SlidingWindowState | None, cost: int, limit: int, sent_ms: int
) -> SlidingWindowState | None:
    """Gives back a request of ``cost`` that this limit counted (see :mod:`limiter.refund`):
    the current count less ``cost`` (floor 0) when the current window started at or before
    ``sent_ms``, otherwise ``state`` unchanged (None stays None).

    Why: as for a fixed window (:func:`limiter.rule.refund`), a stored window that starts
    at or before ``sent_ms`` is the one whose count took the request; once it has rolled
    into the previous count, the stored start is later and nothing is given back (an
    under-admission for at most one window, never an over-admission).
    """
    if state is None or cost < 1 or cost > limit or state.window_start_ms > sent_ms:
        return state
    return dataclasses.replace(state, count=max(0, state.count - cost))
