"""The refund rule: shared vectors, and its guarantees (a refund right after an admission
gives back the state before it; whatever else was admitted meanwhile, a refund never
leaves more room than if the refunded request had never come)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from limiter import gcra, rule, sliding_window
from limiter.gcra import GcraState
from limiter.policy import Algorithm, Limit, Policy
from limiter.policy_rule import LimitState, decide, peek
from limiter.refund import counted, refund
from limiter.rule import Alignment, WindowState
from limiter.sliding_window import SlidingWindowState
from tests.vectors.policy import RefundVector, load_refund

VECTORS = load_refund()


def test_vectors_are_read() -> None:
    """The shared file is found and holds cases (so the next test checks something)."""
    assert len(VECTORS) >= 30


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_shared_vector(vector: RefundVector) -> None:
    """The Python rule gives each shared vector's states."""
    got = refund(
        vector.states, vector.now_ms, vector.policy, vector.cost, vector.counted, vector.sent_ms
    )
    assert got == vector.expected_states


def test_caller_errors_are_refused() -> None:
    """A negative cost, a state count unlike the limit count, an index out of the policy
    and a state of another algorithm are caller errors."""
    policy = Policy((Limit("a", Algorithm.FIXED_WINDOW, 3, 1), Limit("b", Algorithm.GCRA, 3, 1)))
    with pytest.raises(ValueError, match="negative"):
        refund((None, None), 0, policy, -1, [0], 0)
    with pytest.raises(ValueError, match="one state per limit"):
        refund((None,), 0, policy, 1, [0], 0)
    with pytest.raises(ValueError, match="no limit 2"):
        refund((None, None), 0, policy, 1, [2], 0)
    with pytest.raises(TypeError, match="GcraState"):
        refund((None, WindowState(0, 1)), 0, policy, 1, [1], 0)


def test_counted_is_the_admitting_limits_of_an_admission() -> None:
    """The limits that counted are those whose own decision allowed an admitted request
    (a shadow limit that would have denied is not one); a denial counted none."""
    policy = Policy(
        (
            Limit("burst", Algorithm.FIXED_WINDOW, 10, 1),
            Limit("trial", Algorithm.FIXED_WINDOW, 1, 60, shadow=True),
        )
    )
    states: tuple[LimitState | None, ...] = (None, WindowState(0, 1))
    _, admitted = decide(states, 500, 1, policy)
    assert admitted.allowed and counted(admitted) == (0,)
    _, denied = decide((WindowState(0, 10), None), 500, 1, policy)
    assert not denied.allowed and counted(denied) == ()


# -- one limit of each algorithm ------------------------------------------------------------


@st.composite
def limits(draw: st.DrawFn) -> Limit:
    algorithm = draw(st.sampled_from(Algorithm))
    return Limit(
        "only",
        algorithm,
        draw(st.integers(1, 8)),
        draw(st.sampled_from([1, 2, 7])),
        draw(st.sampled_from(Alignment)) if algorithm is Algorithm.FIXED_WINDOW else None,
        draw(st.integers(0, 3)) if algorithm is Algorithm.GCRA else 0,
    )


def start_of(limit: Limit, state: LimitState | None) -> int:
    """Where the window that counts requests now starts (GCRA has none: -inf)."""
    if isinstance(state, (WindowState, SlidingWindowState)):
        return state.window_start_ms
    return -(2**62)


def normal(limit: Limit, state: LimitState | None, now: int) -> LimitState | None:
    """``state`` as a request at ``now`` sees it: the open window (opened empty when the
    stored one ended), the rolled sliding window, a GCRA TAT no earlier than ``now``."""
    if limit.algorithm is Algorithm.FIXED_WINDOW:
        assert limit.alignment is not None and not isinstance(
            state, (SlidingWindowState, GcraState)
        )
        return rule.open_window(state, now, limit.window_seconds, limit.alignment)
    if limit.algorithm is Algorithm.SLIDING_WINDOW:
        assert state is None or isinstance(state, SlidingWindowState)
        return sliding_window.roll(state, now, limit.window_seconds)
    assert state is None or isinstance(state, GcraState)
    if state is None or (state.tat_ms, min(state.tat_fraction, limit.limit - 1)) <= (now, 0):
        return GcraState(now, 0)
    return state


@given(limit=limits(), data=st.data())
def test_a_refund_right_after_an_admission_gives_back_the_state_before(
    limit: Limit, data: st.DataObject
) -> None:
    """Decide-admit, then refund with ``sent_ms`` no later than the admission and nothing
    else in between: the state is exactly the one before the admission, as a request at
    that instant sees it (for GCRA, when no time passed since ``sent_ms``)."""
    policy = Policy((limit,))
    now = data.draw(st.integers(0, 25_000))
    before: LimitState | None = None
    for cost in data.draw(st.lists(st.integers(1, 4), max_size=6)):
        (before,), _ = decide((before,), now - data.draw(st.integers(0, 3000)), cost, policy)
    cost = data.draw(st.integers(1, 4))
    (after,), decision = decide((before,), now, cost, policy)
    assume(decision.allowed)
    if limit.algorithm is Algorithm.GCRA:
        sent = now
    else:
        sent = data.draw(st.integers(start_of(limit, after), now))
    (given_back,) = refund((after,), now, policy, cost, counted(decision), sent)
    assert given_back == normal(limit, before, now)


@given(limit=limits(), data=st.data())
def test_a_refund_never_leaves_more_room_than_without_the_request(
    limit: Limit, data: st.DataObject
) -> None:
    """Over any stream, refunding one admitted request (``sent_ms`` no later than its
    admission, any time later) leaves no more room, now and later, than the same stream
    without that request: what the others counted is never given back."""
    policy = Policy((limit,))
    steps = data.draw(
        st.lists(st.tuples(st.integers(0, 1500), st.integers(1, 4)), min_size=1, max_size=20)
    )
    refunded = data.draw(st.integers(0, len(steps) - 1))
    now = 1_000_000
    state: LimitState | None = None
    without: LimitState | None = None
    sent = 0
    others: list[tuple[int, int]] = []
    for i, (advance, cost) in enumerate(steps):
        now += advance
        (new_state,), decision = decide((state,), now, cost, policy)
        if i == refunded:
            assume(decision.allowed)
            refunded_cost = cost
            sent = now - data.draw(st.integers(0, 2000))
        elif decision.allowed:
            others.append((now, cost))
            (without,), other = decide((without,), now, cost, policy)
            # Less counted: what passed with it passes without it (windows that open at
            # a first request open elsewhere without it: checked apart below).
            assert other.allowed or limit.alignment is Alignment.FIRST_REQUEST
        state = new_state
    now += data.draw(st.integers(0, 3000))
    (given_back,) = refund((state,), now, policy, refunded_cost, (0,), sent)
    if limit.alignment is Alignment.FIRST_REQUEST:
        # Without the request, windows open elsewhere: the window given back still holds
        # every other request it counted.
        assert isinstance(given_back, WindowState)
        end = given_back.window_start_ms + limit.window_seconds * 1000
        assert given_back.count >= sum(
            c for t, c in others if given_back.window_start_ms <= t < end
        )
        return
    for wait in [0, 1, 500, 1000, 7000]:
        room = peek((given_back,), now + wait, policy).decisions[0].remaining
        assert room <= peek((without,), now + wait, policy).decisions[0].remaining


@given(
    state=st.builds(GcraState, st.integers(0, 10_000), st.integers(0, 2)),
    now=st.integers(0, 10_000),
    elapsed=st.integers(0, 10_000),
    cost=st.integers(1, 3),
)
def test_gcra_gives_back_at_most_the_admissions_increment(
    state: GcraState, now: int, elapsed: int, cost: int
) -> None:
    """A GCRA refund moves the TAT back by at most ``cost * T`` less the time elapsed,
    never below ``now``, and never forward."""
    limit, window_seconds, burst = 3, 1, 2
    back = gcra.refund(state, now, cost, limit, window_seconds, burst, now - elapsed)
    assert back is not None
    units = (state.tat_ms * limit + state.tat_fraction, back.tat_ms * limit + back.tat_fraction)
    assert units[1] <= units[0]
    assert units[0] - units[1] <= max(0, cost * window_seconds * 1000 - elapsed * limit)
    assert back == state or units[1] >= now * limit
