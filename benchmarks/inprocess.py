"""In process (``python -m benchmarks --only inprocess``): the floors and each strategy
at several concurrencies and key spreads.

Why in process at all: it measures what a strategy costs the cluster and the client
library, without nginx, Sanic and HTTP in the way. Every contender runs for the same
time from the same number of asyncio tasks of one process, on one hot key and on
``keys`` keys, against the benchmark stack's members:

- ``get`` floor: one plain ``IMap.get`` per request, the least a decision can cost (it
  cannot batch, so on a hot key a strategy may beat it);
- ``set`` floor: one ``IMap.set`` with a TTL, the least a decision that writes costs;
- ``lock``, ``cas``, ``entry_processor``: ``Strategy.decide`` with a limit so high that
  every decision is admitted and writes.

Besides throughput and latency, each strategy's observer hooks (:class:`limiter.Observer`)
give CAS attempts and lock waits, and the cluster operations per decision (batching).

Exactness, per run: every decision must be admitted (the limit is never reached), and
the stored count of the hot key (or of a sample of the spread keys) must equal what was
admitted on it: a lost update is an over-admission waiting for a lower limit. And per
round, per strategy, a burst of ``4 x limit`` requests from 256 tasks on one fresh key
with a limit of 100 must admit exactly 100.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from benchmarks.results import InProcess, InProcessRow
from benchmarks.stats import load_now, percentile
from limiter import (
    STRATEGY_NAMES,
    Alignment,
    ContendedCause,
    Decision,
    LimiterSettings,
    Policy,
    PolicyDecision,
    WindowState,
    connect,
    create_strategy,
)

__all__ = ["FLOORS", "GridOptions", "Recorder", "bench_settings", "row", "run_grid", "timed_run"]

FLOORS = ("floor get", "floor set+ttl")
#: So high that nothing is ever denied: every decision is a write.
UNLIMITED = 2_000_000_000
WINDOW_SECONDS = 3600
BURST_LIMIT = 100
BURST_TASKS = 256
#: Stored counts read back after a spread run (all of them would cost as much as the run).
SAMPLED_KEYS = 64
FLOOR_SEED_CHUNK = 10_000


@dataclasses.dataclass(frozen=True)
class GridOptions:
    members: list[str]
    cluster_name: str
    strategies: Sequence[str] = STRATEGY_NAMES
    concurrency: Sequence[int] = (1, 16, 64, 256)
    keys: Sequence[int] = (10_000, 100_000)
    seconds: float = 1.0
    rounds: int = 2
    #: Cap per run, so a fast contender on a long run cannot flood the members' heap.
    max_decisions: int = 200_000


class Recorder:
    """The strategy's observer for one run: what a decision cost beyond its latency."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.attempts = 0
        self.batches = 0
        self.batched = 0
        self.lock_waits: list[float] = []
        self.contended_causes: collections.Counter[ContendedCause] = collections.Counter()
        self.local_denials = 0
        self.ttl_restore_failures = 0

    def cas_attempts(self, attempts: int) -> None:
        self.attempts += attempts

    def lock_waited(self, seconds: float) -> None:
        self.lock_waits.append(seconds)

    def ttl_restore_failed(self) -> None:
        self.ttl_restore_failures += 1

    def batch_decided(self, size: int) -> None:
        self.batches += 1
        self.batched += size

    def denied_locally(self) -> None:
        self.local_denials += 1

    def contended(self, cause: ContendedCause) -> None:
        self.contended_causes[cause] += 1


@dataclasses.dataclass
class Timed:
    decisions: int
    seconds: float
    latencies: list[float]
    admitted: collections.Counter[str]
    denied: int


async def timed_run(
    call: Callable[[str], Awaitable[Any]],
    key: Callable[[int], str],
    tasks: int,
    seconds: float,
    max_decisions: int,
) -> Timed:
    """``tasks`` workers call ``call`` on keys ``key(0), key(1), ...`` until the time or
    the cap runs out; decisions (a strategy's, of one limit or a whole policy) are tallied
    per key, floors' answers are not."""
    latencies: list[float] = []
    admitted: collections.Counter[str] = collections.Counter()
    denied = 0
    counter = itertools.count()
    started = time.perf_counter()
    end = started + seconds

    async def worker() -> None:
        nonlocal denied
        for i in counter:
            now = time.perf_counter()
            if i >= max_decisions or now >= end:
                return
            name = key(i)
            answer = await call(name)
            latencies.append(time.perf_counter() - now)
            if isinstance(answer, Decision | PolicyDecision):
                if answer.allowed:
                    admitted[name] += 1
                else:
                    denied += 1

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return Timed(len(latencies), time.perf_counter() - started, latencies, admitted, denied)


def row(run: Timed, recorder: Recorder | None, problems: list[str]) -> dict[str, Any]:
    """One run as the report keeps it (latencies in ms)."""
    ms = [x * 1000 for x in run.latencies]
    result: dict[str, Any] = {
        "decisions": run.decisions,
        "per_second": run.decisions / run.seconds if run.seconds else 0.0,
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
        "p999_ms": percentile(ms, 0.999),
        "problems": problems,
        "load_average": load_now(),
    }
    if recorder is not None:
        decided = max(1, recorder.batched)
        result["cluster_ops_per_decision"] = recorder.batches / decided
        result["cas_attempts_per_decision"] = recorder.attempts / decided
        result["cas_attempts_per_batch"] = recorder.attempts / max(1, recorder.batches)
        waits = [w * 1000 for w in recorder.lock_waits]
        result["lock_wait_mean_ms"] = statistics.fmean(waits) if waits else 0.0
        result["lock_wait_p99_ms"] = percentile(waits, 0.99)
        result["contended"] = sum(recorder.contended_causes.values())
    return result


async def check_stored(strategy: Any, run: Timed, hot: bool, prefix: str) -> list[str]:
    """Exactness of one strategy run: all admitted, and stored counts equal admissions."""
    found = []
    admitted = sum(run.admitted.values())
    if admitted != run.decisions:
        found.append(f"{run.decisions - admitted} of {run.decisions} denied under the limit")
    names = list(run.admitted)
    sample = names if hot else random.sample(names, min(SAMPLED_KEYS, len(names)))
    policy = Policy.single(UNLIMITED, WINDOW_SECONDS, Alignment.FIRST_REQUEST)
    stored = await asyncio.gather(
        *(strategy.stored_states(prefix + name, policy) for name in sample)
    )
    for name, (states, _) in zip(sample, stored, strict=True):
        window = states[0]
        count = window.count if isinstance(window, WindowState) else 0
        if count != run.admitted[name]:
            found.append(f"key {name}: {run.admitted[name]} admitted, {count} stored")
    return found[:5]


async def burst(strategy: Any, client_id: str) -> list[str]:
    """``4 x BURST_LIMIT`` concurrent requests on one key admit exactly ``BURST_LIMIT``."""
    requests = 4 * BURST_LIMIT
    todo = iter(range(requests))
    allowed = 0

    async def worker() -> None:
        nonlocal allowed
        for _ in todo:
            decision = await strategy.decide(
                client_id, BURST_LIMIT, WINDOW_SECONDS, alignment=Alignment.FIRST_REQUEST
            )
            allowed += decision.allowed

    await asyncio.gather(*(worker() for _ in range(BURST_TASKS)))
    if allowed != BURST_LIMIT:
        return [f"burst of {requests} on a limit of {BURST_LIMIT}: {allowed} admitted"]
    return []


def contender(name: str, counters: Any, strategy: Any, tag: str) -> Callable[[str], Awaitable[Any]]:
    """What one request of ``name`` does on key ``k`` (keys of a run are prefixed ``tag``)."""
    if name == FLOORS[0]:
        return lambda k: cast(Awaitable[Any], counters.get(f"floor-{k}"))
    if name == FLOORS[1]:
        return lambda k: cast(Awaitable[Any], counters.set(f"{tag}-{k}", 1, ttl=60))
    return lambda k: cast(
        Awaitable[Any],
        strategy.decide(f"{tag}-{k}", UNLIMITED, WINDOW_SECONDS, alignment=Alignment.FIRST_REQUEST),
    )


def bench_settings(members: Sequence[str], cluster_name: str, **overrides: Any) -> LimiterSettings:
    """The strategies' settings for a benchmark in this process: generous, so that a
    slow decision shows in the latency, not as a denial; ``overrides`` win."""
    settings: dict[str, Any] = dict(
        hazelcast_members=",".join(members),
        hazelcast_cluster_name=cluster_name,
        decision_timeout_seconds=30.0,
        lock_wait_seconds=25.0,
        lock_lease_seconds=40.0,
        cas_max_attempts=10_000,
        expiry_grace_seconds=32.0,
    )
    return LimiterSettings.from_env({}, **{**settings, **overrides})


async def run_grid(options: GridOptions, progress: Callable[[str], None]) -> InProcess:
    """Every contender for every spread and concurrency, rounds interleaved; returns the
    medians over rounds, each with its ratio to both floors of the same spread and
    concurrency, and the exactness findings. ``progress`` is told after each run."""
    settings = bench_settings(options.members, options.cluster_name)
    link = await connect(settings)
    run_id = uuid.uuid4().hex[:8]
    counters = await link.get_map(f"ratelimit.counters.bench-{run_id}")
    recorders = {name: Recorder() for name in options.strategies}
    strategies = {
        name: create_strategy(settings, counters, name=name, observer=recorders[name])  # type: ignore[arg-type]
        for name in options.strategies
    }
    spreads = ["hot key", *(f"{k} keys" for k in options.keys)]
    raw: dict[str, dict[str, dict[int, list[dict[str, Any]]]]] = {}
    bursts: dict[str, list[list[str]]] = {name: [] for name in options.strategies}
    try:
        biggest = max(options.keys, default=1)
        await counters.put("floor-hot", 1)
        for start in range(0, biggest, FLOOR_SEED_CHUNK):
            stop = min(start + FLOOR_SEED_CHUNK, biggest)
            await counters.put_all({f"floor-{k}": 1 for k in range(start, stop)})
        for round_ in range(-1, options.rounds):  # round -1 warms up and is not kept
            for spread in spreads:
                spread_keys = None if spread == "hot key" else int(spread.split()[0])
                for tasks in options.concurrency if round_ >= 0 else (64,):
                    for name in (*FLOORS, *options.strategies):
                        tag = f"{run_id}-{round_}-{spread_keys}-{tasks}-{name}"

                        def key(i: int, n: int | None = spread_keys) -> str:
                            return "hot" if n is None else str(i % n)

                        seconds = options.seconds if round_ >= 0 else min(options.seconds, 0.5)
                        recorder = recorders.get(name)
                        if recorder is not None:
                            recorder.reset()
                        call = contender(name, counters, strategies.get(name), tag)
                        run = await timed_run(call, key, tasks, seconds, options.max_decisions)
                        problems: list[str] = []
                        if recorder is not None:
                            problems = await check_stored(
                                strategies[name], run, spread_keys is None, f"{tag}-"
                            )
                        result = row(run, recorder, problems)
                        if round_ >= 0:
                            raw.setdefault(spread, {}).setdefault(name, {}).setdefault(
                                tasks, []
                            ).append(result)
                        progress(
                            f"{'warm-up' if round_ < 0 else f'round {round_ + 1}'} {spread} "
                            f"c={tasks} {name}: {result['per_second']:.0f}/s "
                            f"p99 {result['p99_ms']:.2f} ms"
                            + (f" FAILED {'; '.join(problems)}" if problems else "")
                        )
            if round_ >= 0:
                for name, strategy in strategies.items():
                    bursts[name].append(await burst(strategy, f"{run_id}-burst-{round_}-{name}"))
    finally:
        for strategy in strategies.values():
            await strategy.close()
        await counters.destroy()
        await link.close()
    return summarise(raw, bursts, options)


def summarise(
    raw: dict[str, dict[str, dict[int, list[dict[str, Any]]]]],
    bursts: dict[str, list[list[str]]],
    options: GridOptions,
) -> InProcess:
    """Medians over rounds; ratios are of the medians of the same spread and concurrency."""
    medians: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for spread, by_name in raw.items():
        for name, by_tasks in by_name.items():
            for tasks, runs in by_tasks.items():
                merged: dict[str, Any] = {"runs": len(runs)}
                for field in runs[0]:
                    if field == "problems":
                        merged[field] = [p for r in runs for p in r[field]]
                    elif field == "load_average":
                        merged[field] = max(r[field] for r in runs)
                    else:
                        merged[field] = statistics.median(r[field] for r in runs)
                medians.setdefault(spread, {}).setdefault(name, {})[str(tasks)] = merged
    for contenders in medians.values():
        for per_tasks in contenders.values():
            for level, merged in per_tasks.items():
                for floor, label in zip(FLOORS, ("vs_get", "vs_set"), strict=True):
                    floor_rate = contenders[floor][level]["per_second"]
                    merged[label] = merged["per_second"] / floor_rate if floor_rate else 0.0
    return {
        "seconds_per_run": options.seconds,
        "rounds": options.rounds,
        "concurrency": list(options.concurrency),
        "keys": list(options.keys),
        "strategies": list(options.strategies),
        "burst": {
            "limit": BURST_LIMIT,
            "requests": 4 * BURST_LIMIT,
            "tasks": BURST_TASKS,
            "problems": {name: [p for r in runs for p in r] for name, runs in bursts.items()},
        },
        "scenarios": cast(dict[str, dict[str, dict[str, InProcessRow]]], medians),
    }
