"""In process: each strategy's ``decide_policy`` on one-limit and three-limit clients.

Why in process: without nginx, Sanic and HTTP in the way, a difference between the shapes
is the strategy's own (the rule run per limit, a longer value on the wire and in the
member), so this is where a second round trip or a per-limit write would show first.

Per round, per strategy, one run of each shape, in turn first and second from round to
round (so that a trend of the shared machine's load falls on both alike): ``tasks``
asyncio tasks call :meth:`limiter.Strategy.decide_policy` for ``seconds``, each call on
the next of ``keys`` clients (fresh ones per run, so every run starts with no state and
spreads as the suite's spread runs do: little to batch per key). A first round warms up
and is not kept, as long as the others: after a warm-up of 0.5 s on a stack just started,
the lock strategy's first kept run went at a quarter of its rate two rounds later. Its
findings are kept with the first round's.

Exactness, per run: every decision admitted, and for a sample of the clients every limit's
stored state (:meth:`limiter.Strategy.stored_states`) counts exactly the admissions
(:func:`benchmarks.policies.counted`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.inprocess import SAMPLED_KEYS, Recorder, Timed, bench_settings, row, timed_run
from benchmarks.policies import SHAPES, compare, counted
from benchmarks.results import PolicyInProcess
from limiter import STRATEGY_NAMES, Policy, Strategy, connect, create_strategy

__all__ = ["PolicyOptions", "check_states", "run_policies"]


@dataclasses.dataclass(frozen=True)
class PolicyOptions:
    members: list[str]
    cluster_name: str
    strategies: Sequence[str] = STRATEGY_NAMES
    tasks: int = 64
    keys: int = 10_000
    seconds: float = 2.0
    #: Even, so that each shape runs first as often as the other.
    rounds: int = 4
    #: Cap per run, so a fast strategy on a long run cannot flood the members' heap.
    max_decisions: int = 200_000


async def check_states(strategy: Strategy, run: Timed, policy: Policy, prefix: str) -> list[str]:
    """What is wrong with one run, if anything: a denial under the limits, or a sampled
    client whose stored states do not each count exactly its admissions."""
    found = []
    admitted = sum(run.admitted.values())
    if admitted != run.decisions:
        found.append(f"{run.decisions - admitted} of {run.decisions} denied under the limits")
    names = list(run.admitted)
    sample = random.sample(names, min(SAMPLED_KEYS, len(names)))
    stored = await asyncio.gather(
        *(strategy.stored_states(prefix + name, policy) for name in sample)
    )
    for name, (states, now_ms) in zip(sample, stored, strict=True):
        counts = [
            counted(limit, state, now_ms)
            for limit, state in zip(policy.limits, states, strict=True)
        ]
        if any(count != run.admitted[name] for count in counts):
            found.append(f"client {name}: {run.admitted[name]} admitted, stored {counts}")
    return found[:5]


async def run_policies(options: PolicyOptions, progress: Callable[[str], None]) -> PolicyInProcess:
    """Every strategy's rounds of both shapes; returns each strategy's medians per shape
    and its cost ratio. ``progress`` is told after each run."""
    settings = bench_settings(options.members, options.cluster_name)
    link = await connect(settings)
    run_id = uuid.uuid4().hex[:8]
    counters = await link.get_map(f"ratelimit.counters.bench-policies-{run_id}")
    recorders = {name: Recorder() for name in options.strategies}
    strategies = {
        name: create_strategy(settings, counters, name=name, observer=recorders[name])  # type: ignore[arg-type]
        for name in options.strategies
    }
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {shape: [] for shape in SHAPES} for name in options.strategies
    }
    warm_up_problems: dict[tuple[str, str], list[str]] = {}
    try:
        for round_ in range(-1, options.rounds):  # round -1 warms up and is not kept
            shapes = list(SHAPES) if round_ % 2 == 0 else list(reversed(SHAPES))
            for name, strategy in strategies.items():
                for shape in shapes:
                    policy = SHAPES[shape]
                    tag = f"{run_id}-{round_}-{name}-{shape}-"
                    recorders[name].reset()

                    def call(
                        k: str, s: Strategy = strategy, p: Policy = policy, t: str = tag
                    ) -> Any:
                        return s.decide_policy(t + k, p)

                    run = await timed_run(
                        call,
                        lambda i: str(i % options.keys),
                        options.tasks,
                        options.seconds,
                        options.max_decisions,
                    )
                    problems = await check_states(strategy, run, policy, tag)
                    result = row(run, recorders[name], problems)
                    if round_ < 0:
                        # Not a figure, but a finding all the same: kept with the first round.
                        warm_up_problems[name, shape] = [f"warm-up: {p}" for p in problems]
                    else:
                        result["problems"] = warm_up_problems.pop((name, shape), []) + problems
                        raw[name][shape].append(result)
                    progress(
                        f"policies {'warm-up' if round_ < 0 else f'round {round_ + 1}'} "
                        f"{name} {shape}: {result['per_second']:.0f}/s "
                        f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms "
                        f"load {result['load_average']:.2f}"
                        + (f" FAILED {'; '.join(problems)}" if problems else "")
                    )
    finally:
        for strategy in strategies.values():
            await strategy.close()
        await counters.destroy()
        await link.close()
    return {
        "seconds_per_run": options.seconds,
        "rounds": options.rounds,
        "tasks": options.tasks,
        "keys": options.keys,
        "strategies": {
            name: compare(shapes["one_limit"], shapes["three_limits"])
            for name, shapes in raw.items()
        },
    }
