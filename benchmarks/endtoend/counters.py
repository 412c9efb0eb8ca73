"""The replicas' own counters, read from their ``/metrics`` around a run: how many
requests one cluster call decided (batching) and how many client records were read
from the cluster (registry misses), per request."""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence

import httpx

__all__ = ["REPLICA_COUNTERS", "registry_reads", "replica_counters", "requests_per_call"]

#: Samples of a replica's /metrics the benchmark reads: the requests its cluster calls
#: decided, the calls, and the client records it read from the cluster.
REPLICA_COUNTERS = re.compile(
    r"^(ratelimit_batch_size_sum|ratelimit_batch_size_count|ratelimit_registry_reads_total)"
    r" ([\d.eE+-]+)$",
    re.MULTILINE,
)


def replica_counters(replica_urls: Sequence[str]) -> dict[str, float]:
    """The counters of :data:`REPLICA_COUNTERS` so far, summed over every replica."""
    totals: dict[str, float] = collections.defaultdict(float)
    for url in replica_urls:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        for name, value in REPLICA_COUNTERS.findall(text):
            totals[name] += float(value)
    return totals


def requests_per_call(before: dict[str, float], after: dict[str, float]) -> float:
    """Requests one cluster operation decided on average between two readings (0: none)."""
    calls = after["ratelimit_batch_size_count"] - before["ratelimit_batch_size_count"]
    decided = after["ratelimit_batch_size_sum"] - before["ratelimit_batch_size_sum"]
    return decided / calls if calls else 0.0


def registry_reads(before: dict[str, float], after: dict[str, float]) -> float:
    """Client records the replicas read from the cluster between two readings."""
    return after["ratelimit_registry_reads_total"] - before["ratelimit_registry_reads_total"]
