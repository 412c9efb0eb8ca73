"""The request path's tally: what it writes to the Prometheus values, and when."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from api.metrics import Tally

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
