"""The pure fixed-window rule: shared vectors and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limiter import (
    Alignment,
    Decision,
    Reason,
    WindowState,
    decide,
    decide_batch,
    peek,
    window_start,
)
from tests.vectors.load import BatchVector, Vector, load, load_batch

VECTORS = load()
BATCH_VECTORS = load_batch()


def test_vectors_are_read() -> None:
    """The shared vector file is found and covers both alignments (so the next test checks
    something for each)."""
    assert len(VECTORS) >= 20
    assert sum(v.alignment is Alignment.FIRST_REQUEST for v in VECTORS) >= 10


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_shared_vector(vector: Vector) -> None:
    """The Python rule gives each shared vector's expected state and decision."""
    new_state, decision = decide(
        vector.state,
        vector.now_ms,
        vector.cost,
        vector.limit,
        vector.window_seconds,
        vector.alignment,
    )
    assert decision == vector.expected
    assert new_state == vector.expected_state


@pytest.mark.parametrize(("cost", "limit", "window"), [(0, 1, 1), (1, 0, 1), (1, 1, 0), (-1, 5, 5)])
def test_non_positive_arguments_are_rejected(cost: int, limit: int, window: int) -> None:
    """Cost, limit and window below 1 are caller errors, not decisions."""
    with pytest.raises(ValueError, match="must be positive"):
        decide(None, 0, cost, limit, window)


def test_reset_seconds_round_up() -> None:
    """A window ending in 1 ms still reports 1 s until reset, never 0."""
    assert Decision(False, 1, 0, 1, Reason.LIMIT_REACHED).reset_after_seconds == 1
    assert Decision(False, 1, 0, 1000, Reason.LIMIT_REACHED).reset_after_seconds == 1
    assert Decision(False, 1, 0, 1001, Reason.LIMIT_REACHED).reset_after_seconds == 2


@given(
    limit=st.integers(1, 50),
    window=st.sampled_from([1, 7, 60, 3600]),
    start=st.integers(0, 2**41),
    steps=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 5)), max_size=60),
)
def test_admitted_cost_per_window_never_exceeds_limit(
    limit: int, window: int, start: int, steps: list[tuple[int, int]]
) -> None:
    """Whatever the sequence, the admitted cost within one window is at most the limit,
    and a request is denied only when admitting it would exceed the limit."""
    state: WindowState | None = None
    now = start
    spent: dict[int, int] = {}
    for advance, cost in steps:
        now += advance
        state, decision = decide(state, now, cost, limit, window)
        current = window_start(now, window)
        used = spent.get(current, 0)
        assert decision.allowed == (used + cost <= limit)
        if decision.allowed:
            spent[current] = used + cost
        assert 0 <= decision.remaining == limit - spent.get(current, 0)
        assert 0 < decision.reset_after_ms <= window * 1000
        assert state == WindowState(current, spent.get(current, 0))


def test_batch_vectors_are_read() -> None:
    """The shared batch vector file is found and has cases (so the next test checks something)."""
    assert len(BATCH_VECTORS) >= 12


@pytest.mark.parametrize("vector", BATCH_VECTORS, ids=[v.name for v in BATCH_VECTORS])
def test_shared_batch_vector(vector: BatchVector) -> None:
    """The Python batch rule gives each shared batch vector's state and decisions."""
    new_state, decisions = decide_batch(
        vector.state,
        vector.now_ms,
        vector.costs,
        vector.limit,
        vector.window_seconds,
        vector.alignment,
    )
    assert decisions == vector.expected
    assert new_state == vector.expected_state


def test_an_empty_batch_is_rejected() -> None:
    """A batch without requests is a caller error."""
    with pytest.raises(ValueError, match="at least one"):
        decide_batch(None, 0, [], 1, 1)


@given(
    state=st.none()
    | st.builds(WindowState, st.sampled_from([0, 60_000, 120_000]), st.integers(0, 12)),
    now=st.integers(0, 179_999),
    costs=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    limit=st.integers(1, 12),
    alignment=st.sampled_from(Alignment),
)
def test_a_batch_equals_its_requests_one_by_one(
    state: WindowState | None, now: int, costs: list[int], limit: int, alignment: Alignment
) -> None:
    """Deciding a batch gives exactly the decisions and final state of deciding its
    requests one after the other in the same order at the same time."""
    sequential_state = state
    sequential = []
    for cost in costs:
        sequential_state, decision = decide(sequential_state, now, cost, limit, 60, alignment)
        sequential.append(decision)
    batch_state, batch = decide_batch(state, now, costs, limit, 60, alignment)
    assert batch == sequential
    assert batch_state == sequential_state


@given(
    limit=st.integers(1, 50),
    window=st.sampled_from([1, 7, 60]),
    start=st.integers(0, 2**41),
    steps=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 5)), max_size=60),
)
def test_first_request_windows_last_w_from_the_request_that_opened_them(
    limit: int, window: int, start: int, steps: list[tuple[int, int]]
) -> None:
    """With ``first_request``, a window opens at the first request admitted after the last
    one ended and lasts exactly W; within it the admitted cost never exceeds the limit.
    (As every strategy does, the state is stored only when something was admitted.)"""
    window_ms = window * 1000
    stored: WindowState | None = None
    now = start
    opened: int | None = None
    spent = 0
    for advance, cost in steps:
        now += advance
        if opened is not None and now >= opened + window_ms:
            opened, spent = None, 0
        state, decision = decide(stored, now, cost, limit, window, Alignment.FIRST_REQUEST)
        assert decision.allowed == (cost + spent <= limit)
        if decision.allowed:
            if opened is None:
                opened = now
            spent += cost
            stored = state
            assert stored == WindowState(opened, spent)
        expected_start = now if opened is None else opened
        assert decision.reset_after_ms == expected_start + window_ms - now
        assert decision.remaining == max(0, limit - spent)


@given(
    state=st.none()
    | st.builds(WindowState, st.sampled_from([0, 60_000, 120_000]), st.integers(0, 14)),
    now=st.integers(0, 179_999),
    limit=st.integers(1, 12),
    alignment=st.sampled_from(Alignment),
)
def test_a_peek_answers_as_a_request_of_cost_1_and_reports_the_usage_before_it(
    state: WindowState | None, now: int, limit: int, alignment: Alignment
) -> None:
    """A peek admits exactly when a request of cost 1 would be admitted, and reports the
    remaining and reset that request would see before counting itself."""
    _, one = decide(state, now, 1, limit, 60, alignment)
    looked = peek(state, now, limit, 60, alignment)
    assert looked.allowed == one.allowed
    assert looked.reason == (Reason.ADMITTED if one.allowed else Reason.LIMIT_REACHED)
    assert looked.remaining == (one.remaining + 1 if one.allowed else one.remaining)
    assert looked.reset_after_ms == one.reset_after_ms
    assert looked.limit == limit


def test_a_peek_on_no_window_reports_a_whole_fresh_one() -> None:
    """With nothing stored (or an ended window), a peek reports the full limit and the
    length of the window a request would open, and opens nothing (it returns no state)."""
    assert peek(None, 5_000, 10, 60, Alignment.FIRST_REQUEST) == Decision(
        True, 10, 10, 60_000, Reason.ADMITTED
    )
    assert peek(WindowState(0, 10), 60_000, 10, 60, Alignment.CLOCK) == Decision(
        True, 10, 10, 60_000, Reason.ADMITTED
    )
    assert peek(WindowState(0, 10), 59_000, 10, 60) == Decision(
        False, 10, 0, 1_000, Reason.LIMIT_REACHED
    )
    with pytest.raises(ValueError, match="must be positive"):
        peek(None, 0, 0, 60)
