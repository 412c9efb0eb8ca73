"""The end-to-end benchmark's reading of the replicas' counters and its settings."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.endtoend.counters import REPLICA_COUNTERS, registry_reads, requests_per_call
from benchmarks.endtoend.tool import replica_setting

pytestmark = pytest.mark.unit

EXPOSITION = """\
# HELP ratelimit_batch_size Requests decided by one cluster operation.
# TYPE ratelimit_batch_size histogram
ratelimit_batch_size_bucket{le="1.0"} 4.0
ratelimit_batch_size_count 10.0
ratelimit_batch_size_sum 33.0
# TYPE ratelimit_registry_reads_total counter
ratelimit_registry_reads_total 7.0
ratelimit_registry_reads_created 1.7e+09
"""


def test_the_counters_are_read_from_the_exposition_and_nothing_else() -> None:
    """The sum, count and reads samples are found; buckets and _created are not."""
    assert dict(REPLICA_COUNTERS.findall(EXPOSITION)) == {
        "ratelimit_batch_size_count": "10.0",
        "ratelimit_batch_size_sum": "33.0",
        "ratelimit_registry_reads_total": "7.0",
    }


def test_per_call_and_reads_are_differences_between_two_readings() -> None:
    """Requests per call and registry reads come from what changed between readings."""
    before = {
        "ratelimit_batch_size_sum": 33.0,
        "ratelimit_batch_size_count": 10.0,
        "ratelimit_registry_reads_total": 7.0,
    }
    after = {
        "ratelimit_batch_size_sum": 63.0,
        "ratelimit_batch_size_count": 16.0,
        "ratelimit_registry_reads_total": 9.0,
    }
    assert requests_per_call(before, after) == 5.0
    assert requests_per_call(before, before) == 0.0
    assert registry_reads(before, after) == 2.0


def test_a_replica_setting_must_name_a_ratelimit_variable() -> None:
    """``RATELIMIT_NAME=VALUE`` is split at the first '='; anything else is refused."""
    assert replica_setting("RATELIMIT_REGISTRY_MEMO_SECONDS=600") == (
        "RATELIMIT_REGISTRY_MEMO_SECONDS",
        "600",
    )
    assert replica_setting("RATELIMIT_X=a=b") == ("RATELIMIT_X", "a=b")
    for bad in ("PATH=/tmp", "RATELIMIT_X", "=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            replica_setting(bad)
