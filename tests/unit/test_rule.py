"""The pure fixed-window rule: shared vectors and its invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limiter import Decision, Reason, WindowState, decide, window_start
from tests.vectors.load import Vector, load

VECTORS = load()


def test_vectors_are_read() -> None:
    """The shared vector file is found and not empty (so the next test checks something)."""
    assert len(VECTORS) >= 20


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_shared_vector(vector: Vector) -> None:
    """The Python rule gives each shared vector's expected state and decision."""
    new_state, decision = decide(
        vector.state, vector.now_ms, vector.cost, vector.limit, vector.window_seconds
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
