"""End to end: one-limit against three-limit clients through nginx and 3 replicas, with wrk.

Why here too: a request through the front door also pays for the client's record (a
longer one, from the registry), the policy's headers and the answer's per-limit fields;
in process sees none of that.

On replicas already started with one strategy (the suite restarts them per strategy):
``clients`` clients of each shape are created through ``POST /bucket`` and, before every
round, warmed (:func:`benchmarks.clients.warm_registry`: every replica then holds every
record, as a long-running one holds its active clients'). A round is ``/health``, then
one wrk run per shape, the shapes in turn first and second from round to round, each
request naming the next client of its shape (as the suite's ``clients`` scenario). A
first, shorter round warms up (connections, the members' and replicas' paths for both
shapes) and is not kept, as in process; its findings are kept with the first round's.

Exactness of a run: only 200s, nothing contended, degraded or broken
(:func:`benchmarks.endtoend.checks.problems`), and the states the replicas stored, read
from the cluster before and after it (:func:`benchmarks.policies.counted`): each limit's
counts grew by at least the 200s wrk saw (fewer is a lost update) and at most that plus
what wrk left in flight, and every client's limits all count the same (one atomic write
of all of them). Beside the rates, from the replicas' metrics: cluster operations per
decision (one per request, or fewer where a call batched several) and client records
read from the cluster per request (0 when the warmed memos hold every record).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.clients import create_clients, warm_registry
from benchmarks.endtoend.checks import problems
from benchmarks.endtoend.counters import registry_reads, replica_counters, requests_per_call
from benchmarks.inprocess import bench_settings
from benchmarks.load.wrk import WrkRun, run_wrk
from benchmarks.policies import (
    LIMIT,
    SHAPES,
    THREE_LIMITS,
    compare,
    counted,
    limits_body,
    merge_rows,
)
from benchmarks.results import PolicyCost
from benchmarks.stats import load_now
from limiter import Policy, Strategy, connect, create_strategy

__all__ = ["PolicyHttpOptions", "Target", "run_policy_rounds"]

#: Stored states read at once (a read is one cluster call).
READS_IN_FLIGHT = 64
#: The unrecorded first round's runs are at most this long.
WARM_UP_SECONDS = 2


@dataclasses.dataclass(frozen=True)
class Target:
    """The replicas under test: nginx in front, the replicas themselves (to warm them)
    and the cluster and map their strategy keeps the states in."""

    base: str
    replica_urls: list[str]
    members: list[str]
    cluster_name: str
    counters_map: str
    strategy: str


@dataclasses.dataclass(frozen=True)
class PolicyHttpOptions:
    connections: int = 64
    duration: int = 4
    #: Even, so that each shape runs first as often as the other.
    rounds: int = 4
    clients: int = 1000


async def stored_counts(strategy: Strategy, ids: Sequence[str], policy: Policy) -> list[list[int]]:
    """Per client of ``ids``, what each limit of ``policy`` has counted so far."""
    gate = asyncio.Semaphore(READS_IN_FLIGHT)

    async def one(client_id: str) -> list[int]:
        async with gate:
            states, now_ms = await strategy.stored_states(client_id, policy)
        return [counted(lim, s, now_ms) for lim, s in zip(policy.limits, states, strict=True)]

    return list(await asyncio.gather(*(one(i) for i in ids)))


def check_counts(
    seen: WrkRun, before: list[list[int]], after: list[list[int]], in_flight: int
) -> list[str]:
    """What the stored counts say is wrong with one run, if anything."""
    found = []
    admitted = seen.statuses.get(200, 0)
    for index in range(len(after[0]) if after else 0):
        grew = sum(c[index] for c in after) - sum(c[index] for c in before)
        if grew < admitted:
            found.append(f"limit {index}: {admitted} admitted but {grew} stored (lost updates)")
        elif grew > admitted + in_flight:
            found.append(f"limit {index}: {grew} stored, more than {admitted} admitted + in flight")
    uneven = [counts for counts in after if len(set(counts)) > 1]
    if uneven:
        found.append(f"{len(uneven)} clients whose limits count apart, e.g. {uneven[0]}")
    return found


def _result(seen: WrkRun, found: list[str], health: float) -> dict[str, Any]:
    return {
        "per_second": seen.per_second,
        "p50_ms": seen.p50_ms,
        "p99_ms": seen.p99_ms,
        "ratio_to_health": seen.per_second / health if health else 0.0,
        "problems": found,
        "load_average": load_now(),
    }


async def run_policy_rounds(
    target: Target, options: PolicyHttpOptions, progress: Callable[[str], None]
) -> PolicyCost:
    """The rounds on ``target``'s replicas; returns both shapes' medians, ``/health``'s
    and the cost ratio. ``progress`` is told after each run."""
    settings = bench_settings(target.members, target.cluster_name, counters_map=target.counters_map)
    link = await connect(settings)
    counters = await link.get_map(target.counters_map)
    strategy = create_strategy(settings, counters, name=target.strategy)  # type: ignore[arg-type]
    ids = {
        "one_limit": await create_clients(target.base, options.clients, LIMIT),
        "three_limits": await create_clients(
            target.base, options.clients, LIMIT, limits=limits_body(THREE_LIMITS)
        ),
    }
    runs: dict[str, list[dict[str, Any]]] = {"health": [], **{shape: [] for shape in SHAPES}}

    def wrk(path: str, seconds: int, rotate: Sequence[str] | None = None) -> WrkRun:
        return run_wrk(
            f"{target.base}{path}",
            options.connections,
            seconds,
            rotate=("X-Api-Id", rotate) if rotate is not None else None,
        )

    warm_up_problems: dict[str, list[str]] = {}
    try:
        for round_ in range(-1, options.rounds):  # round -1 warms up and is not kept
            label = "warm-up" if round_ < 0 else f"round {round_ + 1}"
            seconds = options.duration if round_ >= 0 else min(options.duration, WARM_UP_SECONDS)
            await warm_registry(target.replica_urls, [*ids["one_limit"], *ids["three_limits"]])
            health = await asyncio.to_thread(wrk, "/health", seconds)
            if round_ >= 0:
                found = problems("health", health, 0)
                runs["health"].append(_result(health, found, health.per_second))
            progress(f"policies {target.strategy} {label} health: {health.per_second:.0f}/s")
            for shape in list(SHAPES) if round_ % 2 == 0 else list(reversed(SHAPES)):
                policy = SHAPES[shape]
                before = await stored_counts(strategy, ids[shape], policy)
                metrics_before = replica_counters(target.replica_urls)
                seen = await asyncio.to_thread(wrk, "/example", seconds, ids[shape])
                metrics_after = replica_counters(target.replica_urls)
                after = await stored_counts(strategy, ids[shape], policy)
                found = problems("under", seen, 0) + check_counts(
                    seen, before, after, options.connections
                )
                result = _result(seen, found, health.per_second)
                calls = requests_per_call(metrics_before, metrics_after)
                result["cluster_ops_per_decision"] = 1 / calls if calls else 0.0
                reads = registry_reads(metrics_before, metrics_after)
                result["registry_reads_per_request"] = reads / max(seen.requests, 1)
                if round_ < 0:
                    # Not a figure, but a finding all the same: kept with the first round.
                    warm_up_problems[shape] = [f"warm-up: {p}" for p in found]
                else:
                    result["problems"] = warm_up_problems.pop(shape, []) + found
                    runs[shape].append(result)
                progress(
                    f"policies {target.strategy} {label} {shape}: "
                    f"{seen.per_second:.0f}/s p50 {seen.p50_ms:.2f} ms p99 {seen.p99_ms:.2f} ms "
                    f"({result['ratio_to_health']:.2f} of /health) {seen.statuses} "
                    f"{result['cluster_ops_per_decision']:.3f} cluster ops/decision "
                    f"{result['registry_reads_per_request']:.3f} registry reads/request "
                    f"load {result['load_average']:.2f}"
                    + (f" FAILED {'; '.join(found)}" if found else "")
                )
    finally:
        await strategy.close()
        await link.close()
    cost = compare(runs["one_limit"], runs["three_limits"])
    cost["health"] = merge_rows(runs["health"])
    return cost
