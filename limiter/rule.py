"""The fixed-window rule, in one place.

A window lasts ``W`` (``window_seconds``) from its start. A request counts in the stored
window until that window ends (``now < start + W``); otherwise a new window opens, and the
client's :class:`Alignment` says where:

- ``clock``: at ``k*W`` in epoch milliseconds, so window k covers ``[k*W, (k+1)*W)`` and
  every caller that agrees on the clock agrees on the window without talking to anyone;
- ``first_request``: at ``now``, the request that found no open window (the original Go
  service's behaviour: a client gets its whole limit for W from its first request).

A request of weight ``cost`` is admitted when the window's count plus ``cost`` stays within
the limit; a denied request changes nothing (so nothing is stored when it opened the
window).

A stored window that starts *after* ``now`` is kept, as if ``now`` were its start: its
writer's clock was ahead (another replica, or the member that owned the key before a
failover) or this clock stepped back. Treating it as empty would give the client a fresh
budget; keeping it costs at most one window, because every write sets a TTL of at most
``W`` plus the grace, so even a start far in the future is forgotten once the client stops
being admitted. The three strategies differ only in how they make one
call of :func:`decide` atomic (or one call of :func:`decide_batch`, which decides every
request queued for one key by a single cluster operation); the Java entry processor
(``hazelcast/src/main/java/ratelimit/processor/FixedWindowRule.java``) mirrors this
function, and both run the cases in ``tests/vectors/fixed_window.csv`` and
``tests/vectors/fixed_window_batch.csv``.

The algorithm's known edge: a client can spend its whole limit at the end of one window
and again at the start of the next, so up to twice the limit can pass within one window's
length across an edge. That is inherent to fixed windows; a sliding window would cost
more state and more round trips.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "Alignment",
    "Decision",
    "Reason",
    "WindowState",
    "decide",
    "decide_batch",
    "open_window",
    "opening_start",
    "peek",
    "refund",
    "window_start",
]


class Alignment(enum.StrEnum):
    """Where a client's new window starts. The Java mirror numbers them in this order."""

    CLOCK = "clock"
    FIRST_REQUEST = "first_request"

    @property
    def wire_id(self) -> int:
        """The number the entry processor carries (``FixedWindowRule.CLOCK`` = 0, ...)."""
        return WIRE_IDS[self]


#: Each alignment's number on the wire, in declaration order (the Java constants').
WIRE_IDS: dict[Alignment, int] = {alignment: i for i, alignment in enumerate(Alignment)}


class Reason(enum.IntEnum):
    """Why a decision came out as it did. The first three values are shared with Java."""

    ADMITTED = 0
    LIMIT_REACHED = 1
    COST_OVER_LIMIT = 2
    #: No decision in time because the client's key is busy (its queue is full, its lock
    #: is not free, its cas attempts ran out or its batch missed the deadline) while the
    #: cluster answers. A denial, never an admission: see :mod:`limiter.lanes`.
    CONTENDED = 3


@dataclasses.dataclass(frozen=True, slots=True)
class WindowState:
    """What is stored per client: the window it counts and how much it has used."""

    window_start_ms: int
    count: int


class Decision(NamedTuple):
    """The answer for one request. Being over the limit is a decision, not an error."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_ms: int
    reason: Reason
    #: How long until a denied request would pass if sent again, when a rule knows a
    #: time other than the reset (the sliding-window and GCRA rules, on a
    #: ``LIMIT_REACHED`` denial; see :mod:`limiter.sliding_window`, :mod:`limiter.gcra`).
    #: ``None`` otherwise: an admission, or a retry is worth it at the reset only.
    retry_after_ms: int | None = None

    @property
    def reset_after_seconds(self) -> int:
        """Whole seconds until the window ends, rounded up (never 0 before the end)."""
        return -(-self.reset_after_ms // 1000)

    @property
    def wait_ms(self) -> int:
        """How long a denied client should wait before trying again: the retry time when
        the rule gives one, otherwise the reset."""
        return self.reset_after_ms if self.retry_after_ms is None else self.retry_after_ms


def window_start(now_ms: int, window_seconds: int) -> int:
    """The start of the clock-aligned window that holds ``now_ms``."""
    window_ms = window_seconds * 1000
    return (now_ms // window_ms) * window_ms


def opening_start(now_ms: int, window_seconds: int, alignment: Alignment) -> int:
    """Where a window opened at ``now_ms`` starts."""
    if alignment is Alignment.FIRST_REQUEST:
        return now_ms
    return window_start(now_ms, window_seconds)


def open_window(
    state: WindowState | None, now_ms: int, window_seconds: int, alignment: Alignment
) -> WindowState:
    """The window a request at ``now_ms`` counts in: the stored one until it ends (kept
    when it starts later), otherwise a new, empty one where ``alignment`` opens it."""
    if state is not None and now_ms < state.window_start_ms + window_seconds * 1000:
        return state
    return WindowState(opening_start(now_ms, window_seconds, alignment), 0)


def decide(
    state: WindowState | None,
    now_ms: int,
    cost: int,
    limit: int,
    window_seconds: int,
    alignment: Alignment = Alignment.CLOCK,
) -> tuple[WindowState, Decision]:
    """Applies one request to ``state``; returns the state to store and the decision.

    A stored window that ended counts as empty; one that starts later is kept (see the
    module's docstring). ``remaining`` never goes below zero, even when the limit was
    lowered below what the window already used.
    """
    if cost < 1 or limit < 1 or window_seconds < 1:
        raise ValueError(
            "cost, limit and window_seconds must be positive, "
            f"got {cost}, {limit}, {window_seconds}"
        )
    window = open_window(state, now_ms, window_seconds, alignment)
    start, used = window.window_start_ms, window.count
    reset_after_ms = start + window_seconds * 1000 - max(now_ms, start)
    if cost > limit:
        return WindowState(start, used), Decision(
            False, limit, max(0, limit - used), reset_after_ms, Reason.COST_OVER_LIMIT
        )
    if used + cost <= limit:
        count = used + cost
        return WindowState(start, count), Decision(
            True, limit, limit - count, reset_after_ms, Reason.ADMITTED
        )
    return WindowState(start, used), Decision(
        False, limit, max(0, limit - used), reset_after_ms, Reason.LIMIT_REACHED
    )


def peek(
    state: WindowState | None,
    now_ms: int,
    limit: int,
    window_seconds: int,
    alignment: Alignment = Alignment.CLOCK,
) -> Decision:
    """The answer to a request of cost 0: the usage of the window a request at ``now_ms``
    would count in, admitted when a request of cost 1 would be (``LIMIT_REACHED``
    otherwise), with the remaining and the reset :func:`decide` would report.

    It returns no state: a peek stores nothing, so it never opens or extends a window
    (a window it reports as open at ``now_ms`` is opened by the next counted request).
    """
    if limit < 1 or window_seconds < 1:
        raise ValueError(
            f"limit and window_seconds must be positive, got {limit}, {window_seconds}"
        )
    window = open_window(state, now_ms, window_seconds, alignment)
    start, used = window.window_start_ms, window.count
    reset_after_ms = start + window_seconds * 1000 - max(now_ms, start)
    remaining = max(0, limit - used)
    reason = Reason.ADMITTED if remaining > 0 else Reason.LIMIT_REACHED
    return Decision(remaining > 0, limit, remaining, reset_after_ms, reason)


def decide_batch(
    state: WindowState | None,
    now_ms: int,
    costs: Sequence[int],
    limit: int,
    window_seconds: int,
    alignment: Alignment = Alignment.CLOCK,
) -> tuple[WindowState, list[Decision]]:
    """Applies the requests of ``costs`` in arrival order, as :func:`decide` would one by
    one at the same ``now_ms``; returns the final state and one decision per request.

    This is what lets a worker send one cluster operation for every request queued on a
    key: each request that still fits is admitted, one that does not fit is denied and
    changes nothing, so a later smaller one may still fit.
    """
    if not costs:
        raise ValueError("a batch needs at least one request")
    decisions = []
    for cost in costs:
        state, decision = decide(state, now_ms, cost, limit, window_seconds, alignment)
        decisions.append(decision)
    assert state is not None
    return state, decisions


def refund(state: WindowState | None, cost: int, limit: int, sent_ms: int) -> WindowState | None:
    """Gives back a request of ``cost`` that this limit counted (see :mod:`limiter.refund`):
    ``count - cost`` (floor 0) when the stored window started at or before ``sent_ms``,
    otherwise ``state`` unchanged (None stays None).

    Why the start decides: the admission counted in the window open when it was applied,
    at or after ``sent_ms``, which started at or before then; a window that replaced it
    opened after it ended, so it starts after the admission, hence after ``sent_ms``. So a
    window that starts at or before ``sent_ms`` is the one that counted the request, and
    its count still holds ``cost`` of it (counts only grow within a window, and each
    refund takes back only its own request). A cost above the limit was never counted.
    """
    if state is None or cost < 1 or cost > limit or state.window_start_ms > sent_ms:
        return state
    return WindowState(state.window_start_ms, max(0, state.count - cost))
