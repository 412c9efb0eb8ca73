"""The combined rule: one request against a client's whole :class:`~limiter.policy.Policy`.

Why: a client with several limits (a burst and a daily quota, limits of different
algorithms, a shadow limit under trial) must be decided as a whole in one atomic call, so
that no limit counts a request another one denied. This function is that call's body; a
strategy makes it atomic exactly as it makes one fixed-window decision atomic today.

Each limit is decided by its own algorithm's rule (:mod:`limiter.rule`,
:mod:`limiter.sliding_window`, :mod:`limiter.gcra`) at the same ``now_ms`` and ``cost``,
from its own state (``None`` when nothing is stored). Then:

- **Admission**: the request is admitted when every *enforced* limit admits it.
- **Shadow**: a shadow limit is decided like the others but never denies; when it would
  have denied, its index is in ``shadow_denied``.
- **States** (all or nothing): when the request is denied, every state is returned as it
  was given (``None`` included), so a limit that alone would have admitted it counts
  nothing. When it is admitted, every limit that admitted it takes its rule's new state,
  shadow limits included; a shadow limit that would have denied keeps its state as given
  (it did not admit the request, so it counts nothing).
- **Per-limit decisions**, in policy order: each limit's own rule's decision (``allowed``:
  whether that limit alone admits the request; its ``reason`` and ``retry_after_ms``),
  except that ``remaining`` and ``reset_after_ms`` always describe the state the request
  leaves behind: for a limit whose state does not change, the peek values below.
- **Peek** (``cost == 0``): every state is returned as given and every limit reports its
  usage now, ``allowed`` true, ``ADMITTED``: ``remaining`` is how many requests of cost 1
  would pass now, ``reset_after_ms`` its rule's reset. It is read from the rule's
  ``COST_OVER_LIMIT`` path (a cost one above what the limit could ever admit), which every
  rule answers from its current state, changing nothing.
- **denied_by**: the first enforced limit that denies with ``COST_OVER_LIMIT`` (waiting
  never helps); otherwise the enforced denying limit with the longest ``wait_ms``, the
  first in policy order among equals. ``None`` when admitted.
- **retry_after_ms** (a ``LIMIT_REACHED`` denial only): the largest ``wait_ms`` of the
  enforced denying limits. A limit that admits a request keeps admitting it later as long
  as nothing is admitted in between (a fixed window's count only drops, a sliding window's
  estimate never rises, a TAT only falls behind ``now``), and each denying limit's wait is
  the first instant it admits; so this is exactly the first instant every enforced limit
  admits the request, if nothing else is admitted meanwhile. (For a fixed window whose
  stored start is later than ``now`` (a clock behind), its reset is itself a lower bound.)
- **closest**: the enforced limit closest to denying, the one the ``RateLimit`` header
  reports: on a denial, ``denied_by``; otherwise the enforced limit with the smallest
  share left, ``remaining / capacity`` (capacity: the limit, or ``burst + 1`` for GCRA,
  what its remaining counts out of), compared exactly as ``remaining_a * capacity_b <
  remaining_b * capacity_a``, the first in policy order among equals.
- **reason**: ``ADMITTED``, or ``denied_by``'s reason.

A policy of one fixed-window limit gives exactly :func:`limiter.rule.decide`'s decision,
and its state whenever the request is admitted (on a denial the fixed rule returns its
window as seen at ``now``, which the strategies never store; this rule returns the stored
state itself).

The Java mirror is ``hazelcast/src/main/java/ratelimit/processor/PolicyRule.java``; both
run ``tests/vectors/policy.csv`` and ``policy_batch.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from limiter import gcra, rule, sliding_window
from limiter.gcra import GcraState
from limiter.policy import Algorithm, Limit, Policy
from limiter.rule import Decision, Reason, WindowState
from limiter.sliding_window import SlidingWindowState

__all__ = [
    "LimitState",
    "PolicyDecision",
    "admitted",
    "combine",
    "decide",
    "decide_batch",
    "peek",
    "state_numbers",
    "state_of",
]

#: One limit's stored state: its algorithm's own type.
LimitState = WindowState | SlidingWindowState | GcraState


class PolicyDecision(NamedTuple):
    """The answer for one request against a whole policy (see the module's docstring)."""

    allowed: bool
    reason: Reason
    #: One decision per limit, in policy order.
    decisions: tuple[Decision, ...]
    #: The index of the enforced limit that denied, ``None`` when admitted.
    denied_by: int | None
    #: The indices of the shadow limits that would have denied, in policy order.
    shadow_denied: tuple[int, ...]
    #: The index of the enforced limit closest to denying.
    closest: int
    #: On a ``LIMIT_REACHED`` denial, when every enforced limit would admit the request.
    retry_after_ms: int | None


def state_numbers(state: LimitState) -> tuple[int, int, int]:
    """A limit's state as the three numbers both stored layouts keep (the member's
    ``long[]`` and the lock and cas strategies' string): a fixed window's start and
    count, a sliding window's start, count and previous count, a GCRA TAT's milliseconds
    and fraction; 0 where a state has fewer."""
    if isinstance(state, WindowState):
        return state.window_start_ms, state.count, 0
    if isinstance(state, SlidingWindowState):
        return state.window_start_ms, state.count, state.previous_count
    return state.tat_ms, state.tat_fraction, 0


def state_of(limit: Limit, a: int, b: int, c: int) -> LimitState:
    """The state :func:`state_numbers` gave those numbers for, read as ``limit``'s."""
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        return WindowState(a, b)
    if limit.algorithm is Algorithm.SLIDING_WINDOW:
        return SlidingWindowState(a, b, c)
    return GcraState(a, b)


def _decide_one(
    limit: Limit, state: LimitState | None, now_ms: int, cost: int
) -> tuple[LimitState, Decision]:
    """``limit``'s own rule on ``state``; a state of another algorithm is a caller error."""
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        if state is not None and not isinstance(state, WindowState):
            raise TypeError(f"{limit.name}: a fixed window's state is a WindowState")
        assert limit.alignment is not None
        return rule.decide(state, now_ms, cost, limit.limit, limit.window_seconds, limit.alignment)
    if limit.algorithm is Algorithm.SLIDING_WINDOW:
        if state is not None and not isinstance(state, SlidingWindowState):
            raise TypeError(f"{limit.name}: a sliding window's state is a SlidingWindowState")
        return sliding_window.decide(state, now_ms, cost, limit.limit, limit.window_seconds)
    if state is not None and not isinstance(state, GcraState):
        raise TypeError(f"{limit.name}: a gcra limit's state is a GcraState")
    return gcra.decide(state, now_ms, cost, limit.limit, limit.window_seconds, limit.burst)


def _peek(limit: Limit, state: LimitState | None, now_ms: int) -> Decision:
    """``limit``'s usage now, read from its rule's ``COST_OVER_LIMIT`` answer (a cost it
    could never admit), which reports the current state's remaining and reset."""
    never = limit.burst + 2 if limit.algorithm is Algorithm.GCRA else limit.limit + 1
    _, over = _decide_one(limit, state, now_ms, never)
    return Decision(True, over.limit, over.remaining, over.reset_after_ms, Reason.ADMITTED)


def _closest(policy: Policy, decisions: Sequence[Decision]) -> int:
    """The enforced limit with the smallest share left of its capacity, the first among
    equals (compared exactly, in integers)."""
    capacities = policy.capacities
    best = -1
    for i in policy.enforced_indices:
        if best < 0 or decisions[i].remaining * capacities[best] < (
            decisions[best].remaining * capacities[i]
        ):
            best = i
    return best


def _denied_by(policy: Policy, decisions: Sequence[Decision]) -> int | None:
    """The first enforced limit over its limit by cost, else the enforced denying limit
    with the longest wait, the first among equals; None when every enforced one admits.
    One pass: it runs for every answer of every strategy."""
    longest: int | None = None
    longest_wait = -1
    for i in policy.enforced_indices:
        d = decisions[i]
        if d.allowed:
            continue
        if d.reason is Reason.COST_OVER_LIMIT:
            return i
        wait = d.wait_ms
        if wait > longest_wait:
            longest, longest_wait = i, wait
    return longest


def admitted(policy: Policy, decisions: tuple[Decision, ...]) -> PolicyDecision:
    """:func:`combine` of decisions in which every limit admits (the caller knows): the
    common answer, with only the closest limit to find."""
    if len(decisions) == 1:
        return PolicyDecision(True, Reason.ADMITTED, decisions, None, (), 0, None)
    return PolicyDecision(
        True, Reason.ADMITTED, decisions, None, (), _closest(policy, decisions), None
    )


def combine(policy: Policy, decisions: Sequence[Decision]) -> PolicyDecision:
    """The policy's answer from its limits' final decisions (as :func:`decide` leaves
    them): what a strategy that got only the per-limit decisions back (the entry
    processor's answer, a cached denial, a contended batch) rebuilds the rest from.

    A limit that alone admits a denied request keeps ``allowed`` (only its remaining and
    reset are the peek's), so admission, ``denied_by``, the shadow denials, ``closest``,
    the reason and ``retry_after_ms`` all follow from the decisions alone.
    """
    decisions = tuple(decisions)
    if len(decisions) != len(policy.limits):
        raise ValueError(f"one decision per limit: {len(decisions)} for {len(policy)} limits")
    if len(decisions) == 1:  # the single form, most clients: no other limit to weigh
        only = decisions[0]
        if only.allowed:
            return PolicyDecision(True, Reason.ADMITTED, decisions, None, (), 0, None)
        retry = only.wait_ms if only.reason is Reason.LIMIT_REACHED else None
        return PolicyDecision(False, only.reason, decisions, 0, (), 0, retry)
    denied_by = _denied_by(policy, decisions)
    shadow_denied = tuple(i for i in policy.shadow_indices if not decisions[i].allowed)
    if denied_by is None:
        return PolicyDecision(
            True, Reason.ADMITTED, decisions, None, shadow_denied, _closest(policy, decisions), None
        )
    reason = decisions[denied_by].reason
    retry = decisions[denied_by].wait_ms if reason is Reason.LIMIT_REACHED else None
    return PolicyDecision(False, reason, decisions, denied_by, shadow_denied, denied_by, retry)


def decide(
    states: Sequence[LimitState | None], now_ms: int, cost: int, policy: Policy
) -> tuple[tuple[LimitState | None, ...], PolicyDecision]:
    """Decides one request of ``cost`` (0: a peek) against every limit of ``policy``;
    returns the states to store, one per limit, and the decision."""
    if len(states) != len(policy.limits):
        raise ValueError(f"one state per limit: {len(states)} for {len(policy.limits)} limits")
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost}")
    given = tuple(states)
    if cost == 0:
        peeks = tuple(
            _peek(limit, s, now_ms) for limit, s in zip(policy.limits, given, strict=True)
        )
        return given, combine(policy, peeks)
    own = [
        _decide_one(limit, s, now_ms, cost) for limit, s in zip(policy.limits, given, strict=True)
    ]
    allowed = _denied_by(policy, [d for _, d in own]) is None
    new_states: list[LimitState | None] = []
    decisions: list[Decision] = []
    for limit, old, (new, d) in zip(policy.limits, given, own, strict=True):
        if allowed and d.allowed:
            new_states.append(new)
            decisions.append(d)
            continue
        new_states.append(old)
        if d.allowed:  # it alone admits, but the request was denied: it counts nothing
            usage = _peek(limit, old, now_ms)
            d = d._replace(remaining=usage.remaining, reset_after_ms=usage.reset_after_ms)
        decisions.append(d)
    return tuple(new_states), combine(policy, decisions)


def peek(states: Sequence[LimitState | None], now_ms: int, policy: Policy) -> PolicyDecision:
    """What a request of cost 0 is answered (the strategies' peek): each limit's usage as
    :func:`decide` reports it for cost 0, but with the verdict a request of cost 1 would
    get now (its ``allowed``, reason and retry time), so a peek of an exhausted policy is
    a denial that says when to come back, as :func:`limiter.rule.peek` is for one window.
    It returns no state: nothing is counted."""
    if len(states) != len(policy.limits):
        raise ValueError(f"one state per limit: {len(states)} for {len(policy.limits)} limits")
    decisions = []
    for limit, state in zip(policy.limits, states, strict=True):
        usage = _peek(limit, state, now_ms)
        _, one = _decide_one(limit, state, now_ms, 1)
        decisions.append(
            usage._replace(
                allowed=one.allowed, reason=one.reason, retry_after_ms=one.retry_after_ms
            )
        )
    return combine(policy, decisions)


def decide_batch(
    states: Sequence[LimitState | None], now_ms: int, costs: Sequence[int], policy: Policy
) -> tuple[tuple[LimitState | None, ...], list[PolicyDecision]]:
    """Decides the requests of ``costs`` in arrival order, as :func:`decide` would one by
    one at the same ``now_ms``; returns the final states and one decision per request."""
    if not costs:
        raise ValueError("a batch needs at least one request")
    current = tuple(states)
    decisions = []
    for cost in costs:
        current, decision = decide(current, now_ms, cost, policy)
        decisions.append(decision)
    return current, decisions
