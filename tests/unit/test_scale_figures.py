"""The scale figures' arithmetic: partition-thread shares and the capacity projection."""

from __future__ import annotations

import pytest

from benchmarks.scale import summarise
from benchmarks.tools.cpu import ThreadTime
from benchmarks.tools.spread import partition_shares

pytestmark = pytest.mark.unit


def thread(name: str, seconds: float) -> ThreadTime:
    return ThreadTime(name, seconds, 0.0, 0, 0)


def test_only_partition_threads_share_and_the_busiest_comes_first() -> None:
    """Shares count the partition threads alone, over their CPU since the first reading."""
    before = {0: {1: thread("p", 1.0), 2: thread("io", 0.0)}, 1: {3: thread("p", 0.0)}}
    after = {
        0: {1: thread("p", 4.0), 2: thread("io", 9.0)},
        1: {3: thread("p", 1.0), 4: thread("p", 2.0)},
    }
    names = {
        0: {1: "hz.a.partition-operation.thread-0", 2: "hz.a.IO.thread-in-0"},
        1: {3: "hz.b.partition-operation.thread-0", 4: "hz.b.partition-operation.thread-1"},
    }
    shares = partition_shares(before, after, names)
    assert [name for name, _, _ in shares] == [
        "member-1/thread-0",
        "member-2/thread-1",
        "member-2/thread-0",
    ]
    assert [round(share, 3) for _, _, share in shares] == [0.5, 0.333, 0.167]


def test_the_projection_scales_the_per_thread_rate_by_threads_and_evenness() -> None:
    """Capacity = decisions per partition-thread second x threads x mean/busiest share."""
    run = {
        "decisions": 6000,
        "partition_thread_seconds": 2.0,
        "partition_threads": 6,
        "busiest_share": 0.25,
        "per_second": 1000.0,
        "sweep_share": 0.01,
        "load_average": 1.0,
    }
    small = dict(run, per_second=1100.0)
    figures = summarise(
        1000,
        0.0,
        2.0 * 900 * 90,
        1000,
        1000,
        1.0,
        {"small": [small], "all": [run]},
        271,
    )
    assert figures["decisions_per_partition_thread_second"] == 3000
    assert figures["evenness"] == pytest.approx(1 / 1.5)
    assert figures["projected"]["3"] == pytest.approx(3000 * 6 / 1.5)
    assert figures["projected"]["12"] == pytest.approx(4 * figures["projected"]["3"])
    assert figures["bytes_per_window_per_copy"] == pytest.approx(90)
    assert figures["ratio_all_to_small"] == pytest.approx(1000 / 1100)
