"""The pure GCRA rule: shared vectors, its definitions against an exact rational model of
redis-cell's semantics, the rate and burst it guarantees over any stream, and batches."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limiter.gcra import GcraState, decide, decide_batch
from limiter.rule import Reason
from tests.vectors.algorithms import GcraVector, load_gcra, load_gcra_batch

VECTORS = load_gcra()
BATCH_VECTORS = load_gcra_batch()


def test_vectors_are_read() -> None:
    """Both shared files are found and hold cases (so the next tests check something)."""
    assert len(VECTORS) >= 25
    assert len(BATCH_VECTORS) >= 6


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_shared_vector(vector: GcraVector) -> None:
    """The Python rule gives each shared vector's expected state and decision."""
    (cost,) = vector.costs
    state, decision = decide(
        vector.state, vector.now_ms, cost, vector.limit, vector.window_seconds, vector.burst
    )
    assert [decision] == vector.expected
    assert state == vector.expected_state


@pytest.mark.parametrize("vector", BATCH_VECTORS, ids=[v.name for v in BATCH_VECTORS])
def test_shared_batch_vector(vector: GcraVector) -> None:
    """The Python batch rule gives each shared batch vector's state and decisions."""
    state, decisions = decide_batch(
        vector.state, vector.now_ms, vector.costs, vector.limit, vector.window_seconds, vector.burst
    )
    assert decisions == vector.expected
    assert state == vector.expected_state


@pytest.mark.parametrize(
    ("cost", "limit", "window", "burst"),
    [(0, 1, 1, 0), (1, 0, 1, 0), (1, 1, 0, 0), (1, 1, 1, -1), (1, 1, 1, 2**61 // 1000)],
)
def test_invalid_arguments_are_rejected(cost: int, limit: int, window: int, burst: int) -> None:
    """Cost, limit and window below 1, a negative burst, or (burst + 1) * window_ms above
    2**61 are caller errors."""
    with pytest.raises(ValueError, match="must be"):
        decide(None, 0, cost, limit, window, burst)
    with pytest.raises(ValueError, match="must be"):
        decide_batch(None, 0, [cost], limit, window, burst)


def test_an_empty_batch_is_rejected() -> None:
    """A batch without requests is a caller error."""
    with pytest.raises(ValueError, match="at least one"):
        decide_batch(None, 0, [], 1, 1)


def tat_of(state: GcraState | None, limit: int) -> Fraction | None:
    if state is None:
        return None
    return state.tat_ms + Fraction(state.tat_fraction, limit)


@given(
    tat=st.none() | st.integers(0, 40_000),
    now=st.integers(0, 30_000),
    cost=st.integers(1, 6),
    limit=st.integers(1, 13),
    window=st.sampled_from([1, 7, 60]),
    burst=st.integers(0, 4),
)
def test_decisions_follow_redis_cell(
    tat: int | None, now: int, cost: int, limit: int, window: int, burst: int
) -> None:
    """Admission, remaining, reset, retry and the new TAT are the module docstring's
    definitions, computed in exact rationals; the times are rounded up to whole ms."""
    state = None if tat is None else GcraState(tat, tat % limit)
    interval = Fraction(window * 1000, limit)
    depth = (burst + 1) * interval
    old = tat_of(state, limit)
    base = now if old is None else max(old, now)
    new_tat = base + cost * interval
    allowed = cost <= burst + 1 and now >= new_tat - depth
    stored, decision = decide(state, now, cost, limit, window, burst)
    assert decision.allowed == allowed
    kept = new_tat if allowed else base
    assert decision.remaining == max(0, math.floor((depth - (kept - now)) / interval))
    assert decision.reset_after_ms == math.ceil(kept - now)
    if allowed:
        assert tat_of(stored, limit) == new_tat
        assert decision.retry_after_ms is None
    else:
        assert stored == (state or GcraState(now, 0))
    if not allowed and cost <= burst + 1:
        assert decision.reason == Reason.LIMIT_REACHED
        assert decision.retry_after_ms == math.ceil(new_tat - depth - now)
    elif not allowed:
        assert decision.reason == Reason.COST_OVER_LIMIT
        assert decision.retry_after_ms is None


@given(
    limit=st.integers(1, 30),
    window=st.sampled_from([1, 7, 60]),
    burst=st.integers(0, 6),
    start=st.integers(0, 2**41),
    steps=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 4)), max_size=120),
)
def test_admitted_cost_never_exceeds_burst_plus_rate(
    limit: int, window: int, burst: int, start: int, steps: list[tuple[int, int]]
) -> None:
    """Over any stream, the cost admitted within any interval [t0, t1] is at most
    ``burst + 1 + (t1 - t0) / T`` (exactly: times are rationals inside the rule), and a
    denial's retry time is exact: the request passes then, not a millisecond before."""
    window_ms = window * 1000
    state: GcraState | None = None
    now = start
    admitted: list[tuple[int, int]] = []
    for advance, cost in steps:
        now += advance
        state, decision = decide(state, now, cost, limit, window, burst)
        if decision.allowed:
            admitted.append((now, cost))
        elif decision.retry_after_ms is not None:
            retry = decision.retry_after_ms
            assert not decide(state, now + retry - 1, cost, limit, window, burst)[1].allowed
            assert decide(state, now + retry, cost, limit, window, burst)[1].allowed
    for i, (t0, _) in enumerate(admitted):
        spent = 0
        for t1, cost in admitted[i:]:
            spent += cost
            assert (spent - burst - 1) * window_ms <= (t1 - t0) * limit


@given(
    limit=st.integers(1, 1000),
    window=st.sampled_from([1, 7, 60, 86400]),
    burst=st.integers(0, 5),
    start=st.integers(0, 2**41),
    late=st.lists(st.integers(0, 3), min_size=1, max_size=60),
)
def test_requests_one_interval_apart_are_always_admitted(
    limit: int, window: int, burst: int, start: int, late: list[int]
) -> None:
    """Whatever the burst, requests each at least one emission interval (rounded up to
    the millisecond) after the previous one are all admitted."""
    step = -(-window * 1000 // limit)
    now = start
    state: GcraState | None = None
    for delay in late:
        state, decision = decide(state, now, 1, limit, window, burst)
        assert decision.allowed
        now += step + delay


@given(
    limit=st.integers(1, 5000),
    window=st.sampled_from([1, 7, 60]),
    burst=st.integers(0, 5),
    start=st.integers(0, 2**41),
    count=st.integers(1, 200),
)
def test_a_steady_stream_at_the_rate_is_always_admitted(
    limit: int, window: int, burst: int, start: int, count: int
) -> None:
    """The i-th request at ``start + i * T`` rounded up to the millisecond is always
    admitted once the burst covers that rounding (``burst * T >= 1 ms``); without it, an
    interval that is not a whole number of ms can make a rounded arrival early."""
    window_ms = window * 1000
    if burst * window_ms < limit:
        burst = -(-limit // window_ms)
    state: GcraState | None = None
    for i in range(count):
        now = start - (-i * window_ms // limit)
        state, decision = decide(state, now, 1, limit, window, burst)
        assert decision.allowed, i


@given(
    tat=st.none() | st.integers(0, 40_000),
    now=st.integers(0, 30_000),
    costs=st.lists(st.integers(1, 5), min_size=1, max_size=30),
    limit=st.integers(1, 13),
    burst=st.integers(0, 6),
)
def test_a_batch_equals_its_requests_one_by_one(
    tat: int | None, now: int, costs: list[int], limit: int, burst: int
) -> None:
    """Deciding a batch gives exactly the decisions and final state of deciding its
    requests one after the other in the same order at the same time."""
    state = None if tat is None else GcraState(tat, tat % limit)
    sequential_state = state
    sequential = []
    for cost in costs:
        sequential_state, decision = decide(sequential_state, now, cost, limit, 60, burst)
        sequential.append(decision)
    batch_state, batch = decide_batch(state, now, costs, limit, 60, burst)
    assert batch == sequential
    assert batch_state == sequential_state
