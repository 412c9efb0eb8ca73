"""Giving back an admission (a refund): the pure rule, for a whole policy.

Why: a request is sometimes decided against several counter keys (Envoy's descriptors,
each its own client and policy) that no single atomic step covers, and the service's
rule is that a request denied by any of them is counted by none. So each key is decided
on its own and, when one denies, the keys that admitted are given back what they counted,
in a second atomic step per key. Between the two steps another request sees those units
still counted: it may be denied when it would have passed (under-admission), never
admitted beyond a limit. A refund therefore never lowers a state below what the *other*
admitted requests put there, and never touches a window that did not count this request:
when in doubt, it gives back nothing.

:func:`refund` takes the states as stored now, the time ``now_ms`` the strategy decides
with, the policy, the request's ``cost``, the indices of the limits that counted it
(:func:`counted`: those whose own decision in the admitted answer was ``allowed``; a
shadow limit that would have denied counted nothing) and ``sent_ms``, a time on the same
clock no later than when the admission was applied (the caller's "now minus the time
since it sent the decision"). Each counted limit is given back by its algorithm's rule:

- fixed window (:func:`limiter.rule.refund`) and sliding window
  (:func:`limiter.sliding_window.refund`): ``count - cost`` (floor 0) if the stored
  (current) window started at or before ``sent_ms``, i.e. it is the window that counted
  the request; otherwise nothing;
- GCRA (:func:`limiter.gcra.refund`): the TAT moves back by ``cost * T`` less the time
  elapsed since ``sent_ms`` (a TAT forgets time: moving back the whole ``cost * T`` could
  give back room that later requests used; the proof is in its docstring).

Every other limit, a state of None, and whatever the stored value carries for expiry are
kept as they are. A cost a limit could never admit (above its limit, or above
``burst + 1``) was never counted and gives back nothing.

The Java mirror is ``PolicyRule.refund`` (``hazelcast/src/main/java/ratelimit/processor``);
both run ``tests/vectors/refund.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from limiter import gcra, rule, sliding_window
from limiter.gcra import GcraState
from limiter.policy import Algorithm, Limit, Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.rule import WindowState
from limiter.sliding_window import SlidingWindowState

__all__ = ["counted", "refund"]


def counted(decision: PolicyDecision) -> tuple[int, ...]:
    """The limits that counted an answer's request: each limit whose own decision was
    ``allowed`` when the request was admitted; none when it was denied."""
    if not decision.allowed:
        return ()
    return tuple(i for i, d in enumerate(decision.decisions) if d.allowed)


def _refund_one(
    limit: Limit, state: LimitState | None, now_ms: int, cost: int, sent_ms: int
) -> LimitState | None:
    """``limit``'s own refund rule; a state of another algorithm is a caller error."""
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        if state is not None and not isinstance(state, WindowState):
            raise TypeError(f"{limit.name}: a fixed window's state is a WindowState")
        return rule.refund(state, cost, limit.limit, sent_ms)
    if limit.algorithm is Algorithm.SLIDING_WINDOW:
        if state is not None and not isinstance(state, SlidingWindowState):
            raise TypeError(f"{limit.name}: a sliding window's state is a SlidingWindowState")
        return sliding_window.refund(state, cost, limit.limit, sent_ms)
    if state is not None and not isinstance(state, GcraState):
        raise TypeError(f"{limit.name}: a gcra limit's state is a GcraState")
    return gcra.refund(state, now_ms, cost, limit.limit, limit.window_seconds, limit.burst, sent_ms)


def refund(
    states: Sequence[LimitState | None],
    now_ms: int,
    policy: Policy,
    cost: int,
    counted: Iterable[int],
    sent_ms: int,
) -> tuple[LimitState | None, ...]:
    """The states once a request of ``cost``, admitted at or after ``sent_ms`` and counted
    by the limits ``counted``, is given back (see the module's docstring). A cost of 0
    counted nothing: the states are returned as given."""
    if len(states) != len(policy.limits):
        raise ValueError(f"one state per limit: {len(states)} for {len(policy.limits)} limits")
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost}")
    chosen = set(counted)
    for index in chosen:
        if not 0 <= index < len(policy.limits):
            raise ValueError(f"no limit {index} in a policy of {len(policy.limits)}")
    given = tuple(states)
    if cost == 0 or not chosen:
        return given
    return tuple(
        _refund_one(limit, state, now_ms, cost, sent_ms) if i in chosen else state
        for i, (limit, state) in enumerate(zip(policy.limits, given, strict=True))
    )
