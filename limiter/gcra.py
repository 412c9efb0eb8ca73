"""The GCRA rule (generic cell rate algorithm, a token bucket kept as one time), in one place.

Why: a fixed or sliding window refills a client's budget by whole windows; GCRA spaces
requests evenly at the rate and allows a bounded burst on top, and the client learns the
exact time its next request would pass. Semantics are redis-cell's (``CL.THROTTLE key
max_burst count_per_period period quantity``): ``limit`` requests per ``window_seconds``,
so one request every emission interval ``T = W / limit``, plus ``burst`` requests that may
pass at once above the steady one: the bucket holds ``burst + 1``.

The state is the theoretical arrival time (TAT): when the bucket would be full again. A
request of ``cost`` at ``now`` gives ``new_tat = max(tat, now) + cost * T``.

- **Admit** when ``now >= new_tat - (burst + 1) * T``; a denied request changes nothing;
  a cost above ``burst + 1`` can never pass and is denied as ``COST_OVER_LIMIT``.
- **remaining**: the largest whole n with ``max(tat, now) + n * T - now <= (burst + 1) *
  T``, taken after the request when it is admitted: how many requests of cost 1 would
  still pass now (at most ``burst + 1``, which may exceed ``limit``).
- **reset_after_ms**: ``max(tat, now) - now`` with the TAT after the decision, i.e.
  ``new_tat - now`` when admitted: the time until the bucket is full again.
- **retry_after_ms** (a ``LIMIT_REACHED`` denial only): ``new_tat - (burst + 1) * T -
  now``, the time until this request would pass, not a window end.

Integer units, exact: T is not a whole number of milliseconds in general (86 400 000 ms /
1e9 requests), so every time inside the rule is a rational with denominator ``limit``: the
TAT is stored as ``tat_ms + tat_fraction / limit`` ms (``0 <= tat_fraction < limit``), T is
``W_ms / limit`` and ``(burst + 1) * T`` is ``(burst + 1) * W_ms / limit``, all exact. The
decisions therefore have no error at all, for any limit; only the reported times are
rounded, *up* to the next whole millisecond (never early, less than 1 ms late). A
difference of times is multiplied by ``limit`` only when it is at most ``(burst + 1) * T``,
so every product stays within ``(burst + 1) * W_ms``, checked to be at most 2**61 (a
burst of 1e9 fits windows up to 26 days): no Java ``long`` overflows. A fraction stored
under a larger limit than today's is read as ``limit - 1`` (less than 1 ms off).

Arrivals are whole milliseconds: requests at least T apart (rounded up to the ms) always
pass; a stream at ``start + i * T`` rounded to the ms may arrive up to 1 ms early against
the exact TAT, so it always passes only with ``burst * T >= 1 ms``.

A TAT far ahead of ``now`` (a clock behind, or a burst just spent) simply denies until
``now`` catches up; there is no window to keep or roll.

The Java mirror is ``hazelcast/src/main/java/ratelimit/processor/GcraRule.java``; both run
``tests/vectors/gcra.csv`` and ``gcra_batch.csv``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from limiter.rule import Decision, Reason

__all__ = ["MAX_CAPACITY_TIMES_WINDOW_MS", "GcraState", "decide", "decide_batch", "refund"]

#: The largest ``(burst + 1) * window_ms``: every product and sum stays below 2**63.
MAX_CAPACITY_TIMES_WINDOW_MS = 2**61


@dataclasses.dataclass(frozen=True, slots=True)
class GcraState:
    """What is stored per client: the TAT, ``tat_ms + tat_fraction / limit`` ms."""

    tat_ms: int
    tat_fraction: int = 0


def _checked(cost: int, limit: int, window_seconds: int, burst: int) -> int:
    """``(burst + 1) * W_ms``, the bucket's depth in 1/limit ms, once the arguments pass."""
    if cost < 1 or limit < 1 or window_seconds < 1 or burst < 0:
        raise ValueError(
            "cost, limit and window_seconds must be positive and burst not negative, "
            f"got {cost}, {limit}, {window_seconds}, {burst}"
        )
    window_ms = window_seconds * 1000
    if burst + 1 > MAX_CAPACITY_TIMES_WINDOW_MS // window_ms:
        raise ValueError(
            f"(burst + 1) * window_ms must be at most 2**61, got {burst + 1} * {window_ms}"
        )
    return (burst + 1) * window_ms


def _ceil_ms(whole_ms: int, fraction: int) -> int:
    return whole_ms + (1 if fraction > 0 else 0)


def decide(
    state: GcraState | None,
    now_ms: int,
    cost: int,
    limit: int,
    window_seconds: int,
    burst: int = 0,
) -> tuple[GcraState, Decision]:
    """Applies one request to ``state``; returns the state to store and the decision.

    A denial returns ``state`` unchanged (with no state, an empty one: TAT = ``now_ms``).
    """
    depth = _checked(cost, limit, window_seconds, burst)
    window_ms = window_seconds * 1000
    # ahead = max(tat, now) - now, as (whole ms, fraction of 1/limit ms).
    fraction = 0 if state is None else min(state.tat_fraction, limit - 1)
    if state is None or (state.tat_ms, fraction) <= (now_ms, 0):
        ahead_ms, ahead_fraction = 0, 0
    else:
        ahead_ms, ahead_fraction = state.tat_ms - now_ms, fraction
    unchanged = GcraState(now_ms, 0) if state is None else state
    reset = _ceil_ms(ahead_ms, ahead_fraction)
    # room: the largest n with ahead * limit + n * W_ms <= depth (ahead * limit computed
    # only when it is at most depth).
    if (ahead_ms, ahead_fraction) > divmod(depth, limit):
        ahead, room = depth + 1, 0  # more than the bucket holds: nothing passes
    else:
        ahead = ahead_ms * limit + ahead_fraction
        room = (depth - ahead) // window_ms
    if cost > burst + 1:
        return unchanged, Decision(False, limit, room, reset, Reason.COST_OVER_LIMIT)
    if cost <= room:
        new_ahead = ahead + cost * window_ms
        whole, part = divmod(new_ahead, limit)
        return GcraState(now_ms + whole, part), Decision(
            True, limit, room - cost, _ceil_ms(whole, part), Reason.ADMITTED
        )
    # It passes once ahead has shrunk to (depth - cost * W_ms) / limit.
    target_ms, target_fraction = divmod(depth - cost * window_ms, limit)
    retry = ahead_ms - target_ms + (1 if ahead_fraction > target_fraction else 0)
    return unchanged, Decision(False, limit, room, reset, Reason.LIMIT_REACHED, retry)


def decide_batch(
    state: GcraState | None,
    now_ms: int,
    costs: Sequence[int],
    limit: int,
    window_seconds: int,
    burst: int = 0,
) -> tuple[GcraState, list[Decision]]:
    """Applies the requests of ``costs`` in arrival order, as :func:`decide` would one by
    one at the same ``now_ms``; returns the final state and one decision per request."""
    if not costs:
        raise ValueError("a batch needs at least one request")
    decisions = []
    for cost in costs:
        state, decision = decide(state, now_ms, cost, limit, window_seconds, burst)
        decisions.append(decision)
    assert state is not None
    return state, decisions


def refund(
    state: GcraState | None,
    now_ms: int,
    cost: int,
    limit: int,
    window_seconds: int,
    burst: int,
    sent_ms: int,
) -> GcraState | None:
    """Gives back a request of ``cost`` that this limit admitted at some instant
    ``t >= sent_ms`` (see :mod:`limiter.refund`): the TAT moves back by ``cost * T`` less
    the time since ``sent_ms``, ``max(0, cost * T - (now - sent_ms))``; a TAT that this
    puts at or before ``now`` becomes ``now`` (a full bucket, as an empty state is). A TAT
    already at or before ``now`` (the bucket full again) and None are kept.

    Why not the whole ``cost * T``: a TAT forgets time. The TAT after admissions at
    ``t_1 <= ... <= t_n`` of costs ``c_i`` is ``max(tat_0 + sum(c_i) * T, max_k(t_k +
    sum_{i>=k} c_i * T))``. Drop the refunded request ``a`` (at ``t_a``, cost ``c``): every
    term whose suffix holds ``a`` loses exactly ``c * T``, but a term that starts at a
    later request ``k`` (one that found the bucket drained) keeps its value, ``t_k +
    sum_{i>=k} c_i * T``. The stored TAT is at least the term starting at ``a``, ``t_a + c
    * T + sum_{i>a} c_i * T``, so that later term is at most ``tat - c * T + (t_k -
    t_a)``, and ``t_k - t_a <= now - sent_ms``. So the TAT without ``a`` is at most ``tat -
    c * T + (now - sent_ms)``, and the TAT given back is never below it: the bucket never has
    more room than if the refunded request had never come, whatever else was admitted
    meanwhile. (Moving back by the whole ``c * T`` could: burst 1, ``T`` = 1 s, ``a`` at 0
    and ``b`` at 0.5 s leave a TAT of 2 s; without ``a`` it is 1.5 s, but 2 s less 1 s is
    1 s.) With no time elapsed (``sent_ms == now``), it is the exact inverse of the
    admission. Clocks: exact on one clock (the entry processor's member); the lock and cas
    strategies' replicas may differ by their skew, which their decisions already do.
    """
    depth = _checked(cost, limit, window_seconds, burst)
    if state is None or cost > burst + 1:
        return state
    fraction = min(state.tat_fraction, limit - 1)
    if (state.tat_ms, fraction) <= (now_ms, 0):
        return state
    give = cost * (depth // (burst + 1))  # cost * W_ms, in 1/limit ms: at most depth
    elapsed_ms = max(0, now_ms - sent_ms)
    if elapsed_ms > give // limit:
        return state
    give -= elapsed_ms * limit
    if give == 0:
        return state
    whole, part = divmod(give, limit)
    tat_ms, tat_fraction = state.tat_ms - whole, fraction - part
    if tat_fraction < 0:
        tat_ms, tat_fraction = tat_ms - 1, tat_fraction + limit
    if (tat_ms, tat_fraction) <= (now_ms, 0):
        return GcraState(now_ms, 0)
    return GcraState(tat_ms, tat_fraction)
