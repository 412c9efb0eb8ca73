"""The request path's tally: what it writes to the Prometheus values, and when."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from api.metrics import (
    MAX_LIMIT_NAMES,
    TALLY,
    Tally,
    count_limits,
    limit_name_label,
)
from api.metrics import REGISTRY as METRICS
from limiter import Algorithm, Alignment, Limit, Policy
from limiter.contention import contended_policy
from limiter.policy_rule import decide

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's lines but the creation times (which differ between registries)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def _pair() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("seen", "requests", ["route"], registry=registry)
    histogram = Histogram("took_seconds", "time", ["route"], buckets=BUCKETS, registry=registry)
    return registry, counter, histogram


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["/a", "/b"]),
            st.one_of(st.sampled_from(BUCKETS), st.floats(0, 100, allow_nan=False)),
        ),
        max_size=40,
    )
)
def test_a_flushed_tally_reads_as_every_count_made_one_by_one(
    events: list[tuple[str, float]],
) -> None:
    """Counts and observations summed in the tally expose, once flushed, exactly what the
    same calls made directly on the metrics expose (buckets, sums and counts)."""
    direct, direct_counter, direct_histogram = _pair()
    tallied, tallied_counter, tallied_histogram = _pair()
    tally = Tally()
    for route, amount in events:
        direct_counter.labels(route).inc()
        direct_histogram.labels(route).observe(amount)
        tally.inc(tallied_counter.labels(route))
        tally.observe(tallied_histogram.labels(route), amount)
    tally.flush()
    assert _samples(tallied) == _samples(direct)


def test_a_tally_in_an_event_loop_writes_within_its_flush_time() -> None:
    """Inside a loop nothing is written at once; the sums appear after flush_seconds."""
    registry, counter, _ = _pair()
    child = counter.labels("/a")

    async def count_and_wait() -> tuple[float, float]:
        tally = Tally(flush_seconds=0.05)
        tally.inc(child, 3)
        before = registry.get_sample_value("seen_total", {"route": "/a"}) or 0.0
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            after = registry.get_sample_value("seen_total", {"route": "/a"}) or 0.0
            if after:
                return before, after
            await asyncio.sleep(0.01)
        return before, 0.0

    assert asyncio.run(count_and_wait()) == (0.0, 3.0)


def test_a_tally_outside_an_event_loop_writes_at_once() -> None:
    """With no loop to flush later (a script, a test), each count is written as made."""
    registry, counter, _ = _pair()
    Tally().inc(counter.labels("/b"), 2)
    assert registry.get_sample_value("seen_total", {"route": "/b"}) == 2.0


THREE = Policy(
    (
        Limit("burst", Algorithm.GCRA, 2, 60, burst=1),
        Limit("daily", Algorithm.FIXED_WINDOW, 5, 86400, Alignment.CLOCK),
        Limit("trial", Algorithm.SLIDING_WINDOW, 1, 60, shadow=True),
    )
)


def _value(name: str, labels: dict[str, str]) -> float:
    return METRICS.get_sample_value(name, labels) or 0.0


def test_shadow_denials_and_near_limit_answers_are_counted_by_limit() -> None:
    """A request a shadow limit would have denied counts under that limit's name and
    algorithm; an admitted one that leaves its closest limit at or below the share counts
    under that limit's algorithm; a contended denial counts neither."""
    shadow = {"limit_name": "trial", "algorithm": "sliding_window"}
    near = {"algorithm": "gcra"}
    before = (
        _value("ratelimit_shadow_denials_total", shadow),
        _value("ratelimit_near_limit_total", near),
    )
    states, first = decide([None, None, None], 1_000_000, 1, THREE)
    count_limits(THREE, first, 0.5)  # burst: 1 of 2 left, at the share
    _, second = decide(states, 1_000_001, 1, THREE)
    count_limits(THREE, second, 0.1)  # burst exhausted; trial would have denied
    count_limits(THREE, contended_policy(THREE), 0.1)
    TALLY.flush()
    after = (
        _value("ratelimit_shadow_denials_total", shadow),
        _value("ratelimit_near_limit_total", near),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 2.0)


def test_limit_names_are_capped_per_process() -> None:
    """The first MAX_LIMIT_NAMES distinct names label their series; any later name is
    _other (no limit name can be), while a name seen before keeps its own."""
    seen = [limit_name_label(f"cap-{i}") for i in range(MAX_LIMIT_NAMES + 5)]
    assert limit_name_label("cap-0") in {"cap-0", "_other"}
    assert seen.count("_other") >= 5
    assert len(set(seen) - {"_other"}) <= MAX_LIMIT_NAMES
    assert limit_name_label(f"cap-{MAX_LIMIT_NAMES + 4}") == "_other"
