"""The combined rule: shared vectors, and its guarantees over random policies and streams
(no enforced limit is ever exceeded, a denial changes nothing, shadow limits never change
an admission, a batch is its requests one by one, one fixed window is the fixed rule)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limiter import gcra, rule, sliding_window
from limiter.gcra import GcraState
from limiter.policy import Algorithm, Limit, Policy
from limiter.policy_rule import LimitState, PolicyDecision, decide, decide_batch
from limiter.rule import Alignment, Decision, Reason, WindowState
from limiter.sliding_window import SlidingWindowState
from tests.vectors.policy import (
    PolicyBatchVector,
    PolicyVector,
    load_policy,
    load_policy_batch,
)

VECTORS = load_policy()
BATCH_VECTORS = load_policy_batch()

States = tuple[LimitState | None, ...]


def capacity(limit: Limit) -> int:
    """What a limit's remaining counts out of: GCRA's bucket, otherwise the limit."""
    return limit.burst + 1 if limit.algorithm is Algorithm.GCRA else limit.limit


def test_vectors_are_read() -> None:
    """Both shared files are found and hold cases (so the next tests check something)."""
    assert len(VECTORS) >= 30
    assert len(BATCH_VECTORS) >= 6


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_shared_vector(vector: PolicyVector) -> None:
    """The Python rule gives each shared vector's states and decision."""
    states, decision = decide(vector.states, vector.now_ms, vector.cost, vector.policy)
    assert decision == vector.expected
    assert states == vector.expected_states


@pytest.mark.parametrize("vector", BATCH_VECTORS, ids=[v.name for v in BATCH_VECTORS])
def test_shared_batch_vector(vector: PolicyBatchVector) -> None:
    """The Python batch rule gives each shared batch vector's final states and answers."""
    states, decisions = decide_batch(vector.states, vector.now_ms, vector.costs, vector.policy)
    got = [(d.allowed, d.reason, d.denied_by, d.closest, d.retry_after_ms) for d in decisions]
    assert got == vector.expected
    assert states == vector.expected_states


def test_caller_errors_are_refused() -> None:
    """A negative cost, a state count unlike the limit count, a state of another
    algorithm, and an empty batch are caller errors."""
    policy = Policy((Limit("a", Algorithm.FIXED_WINDOW, 3, 1), Limit("b", Algorithm.GCRA, 3, 1)))
    with pytest.raises(ValueError, match="negative"):
        decide((None, None), 0, -1, policy)
    with pytest.raises(ValueError, match="one state per limit"):
        decide((None,), 0, 1, policy)
    with pytest.raises(TypeError, match="GcraState"):
        decide((None, WindowState(0, 1)), 0, 1, policy)
    with pytest.raises(TypeError, match="WindowState"):
        decide((GcraState(0, 0), None), 0, 1, policy)
    with pytest.raises(ValueError, match="at least one"):
        decide_batch((None, None), 0, [], policy)


# -- random policies, states and streams ---------------------------------------------------


@st.composite
def limits(draw: st.DrawFn, name: str) -> Limit:
    algorithm = draw(st.sampled_from(Algorithm))
    return Limit(
        name,
        algorithm,
        draw(st.integers(1, 8)),
        draw(st.sampled_from([1, 2, 7])),
        draw(st.sampled_from(Alignment)) if algorithm is Algorithm.FIXED_WINDOW else None,
        draw(st.integers(0, 3)) if algorithm is Algorithm.GCRA else 0,
        draw(st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn, max_limits: int = 4) -> Policy:
    count = draw(st.integers(1, max_limits))
    chosen = [draw(limits(f"l{i}")) for i in range(count)]
    if all(limit.shadow for limit in chosen):
        chosen[0] = dataclasses.replace(chosen[0], shadow=False)
    return Policy(tuple(chosen))


@st.composite
def states_for(draw: st.DrawFn, policy: Policy) -> States:
    """Any state each limit could hold around t = 0..20 s, or none."""
    result: list[LimitState | None] = []
    for limit in policy.limits:
        if draw(st.booleans()):
            result.append(None)
            continue
        window_ms = limit.window_seconds * 1000
        start = draw(st.integers(0, 20_000))
        count = draw(st.integers(0, limit.limit + 2))
        if limit.algorithm is Algorithm.FIXED_WINDOW:
            if limit.alignment is Alignment.CLOCK:
                start -= start % window_ms
            result.append(WindowState(start, count))
        elif limit.algorithm is Algorithm.SLIDING_WINDOW:
            previous = draw(st.integers(0, limit.limit + 2))
            result.append(SlidingWindowState(start - start % window_ms, count, previous))
        else:
            result.append(GcraState(start, draw(st.integers(0, limit.limit - 1))))
    return tuple(result)


@st.composite
def situations(draw: st.DrawFn) -> tuple[Policy, States, int, int]:
    """A policy, states for it, a time and a cost (0 included)."""
    policy = draw(policies())
    return policy, draw(states_for(policy)), draw(st.integers(0, 25_000)), draw(st.integers(0, 6))


def alone(
    limit: Limit, state: LimitState | None, now: int, cost: int
) -> tuple[LimitState, Decision]:
    """``limit``'s own rule, called directly (not through the combined rule)."""
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        assert limit.alignment is not None and not isinstance(
            state, (SlidingWindowState, GcraState)
        )
        return rule.decide(state, now, cost, limit.limit, limit.window_seconds, limit.alignment)
    if limit.algorithm is Algorithm.SLIDING_WINDOW:
        assert state is None or isinstance(state, SlidingWindowState)
        return sliding_window.decide(state, now, cost, limit.limit, limit.window_seconds)
    assert state is None or isinstance(state, GcraState)
    return gcra.decide(state, now, cost, limit.limit, limit.window_seconds, limit.burst)


def check_answer(policy: Policy, decision: PolicyDecision) -> None:
    """The summary fields agree with the per-limit decisions (the module's definitions)."""
    enforced = [i for i, limit in enumerate(policy.limits) if limit.enforced]
    denying = [i for i in enforced if not decision.decisions[i].allowed]
    assert decision.allowed == (not denying)
    assert decision.shadow_denied == tuple(
        i
        for i, limit in enumerate(policy.limits)
        if limit.shadow and not decision.decisions[i].allowed
    )
    assert decision.closest in enforced
    if decision.allowed:
        assert decision.denied_by is None and decision.retry_after_ms is None
        c = decision.decisions[decision.closest]
        c_capacity = capacity(policy.limits[decision.closest])
        for i in enforced:
            d = decision.decisions[i]
            assert c.remaining * capacity(policy.limits[i]) <= d.remaining * c_capacity
        return
    assert decision.closest == decision.denied_by
    if decision.reason is Reason.LIMIT_REACHED:
        waits = [decision.decisions[i].wait_ms for i in denying]
        assert decision.retry_after_ms == max(waits)


@given(
    policy=policies(),
    steps=st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 4)), max_size=40),
)
def test_no_enforced_limit_is_ever_exceeded(policy: Policy, steps: list[tuple[int, int]]) -> None:
    """Over any stream, every limit's rule alone, fed only the requests the policy
    admitted, admits each one (enforced limits) or is counted only where it admitted
    (shadow limits), and ends in the same state: no limit counts more than it allows. A
    denial's retry time is the first instant every enforced limit admits the request."""
    states: States = (None,) * len(policy)
    own: list[LimitState | None] = [None] * len(policy)
    now = 1_000_000
    for advance, cost in steps:
        now += advance
        new_states, decision = decide(states, now, cost, policy)
        check_answer(policy, decision)
        if cost > 0 and decision.allowed:
            for i, limit in enumerate(policy.limits):
                state, d = alone(limit, own[i], now, cost)
                assert d.allowed or limit.shadow
                if d.allowed:
                    own[i] = state
        assert new_states == tuple(own)
        if decision.retry_after_ms is not None:
            retry = decision.retry_after_ms
            assert decide(states, now + retry, cost, policy)[1].allowed
            assert not decide(states, now + retry - 1, cost, policy)[1].allowed
        states = new_states


@given(situation=situations())
def test_a_denial_or_a_peek_changes_nothing(situation: tuple[Policy, States, int, int]) -> None:
    """A denied request or a peek returns every state as given, and every limit whose
    state did not change reports its usage now (what a peek reports)."""
    policy, states, now, cost = situation
    new_states, decision = decide(states, now, cost, policy)
    check_answer(policy, decision)
    _, peek = decide(states, now, 0, policy)
    assert all(d.allowed and d.reason is Reason.ADMITTED for d in peek.decisions)
    for i, (old, new) in enumerate(zip(states, new_states, strict=True)):
        if new is old:
            d, p = decision.decisions[i], peek.decisions[i]
            assert (d.remaining, d.reset_after_ms) == (p.remaining, p.reset_after_ms)
    if cost == 0 or not decision.allowed:
        assert new_states == states


@given(situation=situations())
def test_shadow_limits_never_change_the_admission(
    situation: tuple[Policy, States, int, int],
) -> None:
    """Removing the shadow limits gives the same admission, reason, retry time, denying
    and closest limit, and the same enforced states and decisions."""
    policy, states, now, cost = situation
    enforced = [i for i, limit in enumerate(policy.limits) if limit.enforced]
    bare = Policy(tuple(policy.limits[i] for i in enforced))
    new_states, decision = decide(states, now, cost, policy)
    bare_states, bare_decision = decide(tuple(states[i] for i in enforced), now, cost, bare)
    assert decision.allowed == bare_decision.allowed
    assert decision.reason == bare_decision.reason
    assert decision.retry_after_ms == bare_decision.retry_after_ms
    assert enforced[bare_decision.closest] == decision.closest
    if bare_decision.denied_by is not None:
        assert decision.denied_by == enforced[bare_decision.denied_by]
    assert bare_states == tuple(new_states[i] for i in enforced)
    assert bare_decision.decisions == tuple(decision.decisions[i] for i in enforced)


@given(
    data=st.data(),
    policy=policies(),
    now=st.integers(0, 25_000),
    costs=st.lists(st.integers(0, 4), min_size=1, max_size=12),
)
def test_a_batch_equals_its_requests_one_by_one(
    data: st.DataObject, policy: Policy, now: int, costs: list[int]
) -> None:
    """Deciding a batch gives exactly the decisions and final states of deciding its
    requests one after the other in the same order at the same time."""
    states = data.draw(states_for(policy))
    sequential = []
    current = states
    for cost in costs:
        current, decision = decide(current, now, cost, policy)
        sequential.append(decision)
    assert decide_batch(states, now, costs, policy) == (current, sequential)


@given(
    state=st.none()
    | st.builds(WindowState, st.sampled_from([0, 60_000, 120_000, 125_000]), st.integers(0, 12)),
    now=st.integers(0, 179_999),
    cost=st.integers(1, 14),
    limit=st.integers(1, 12),
    alignment=st.sampled_from(Alignment),
)
def test_one_fixed_window_is_the_fixed_rule(
    state: WindowState | None, now: int, cost: int, limit: int, alignment: Alignment
) -> None:
    """A policy of one fixed-window limit gives exactly the fixed rule's decision, and its
    state when the request is admitted (on a denial, the stored state itself)."""
    policy = Policy((Limit("only", Algorithm.FIXED_WINDOW, limit, 60, alignment),))
    expected_state, expected = rule.decide(state, now, cost, limit, 60, alignment)
    (new_state,), decision = decide((state,), now, cost, policy)
    assert decision.decisions == (expected,)
    assert (decision.allowed, decision.reason) == (expected.allowed, expected.reason)
    limit_reached = expected.reason is Reason.LIMIT_REACHED
    assert decision.retry_after_ms == (expected.wait_ms if limit_reached else None)
    assert new_state == (expected_state if expected.allowed else state)
