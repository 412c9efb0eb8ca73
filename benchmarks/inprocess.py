"""In-process benchmark: the three strategies side by side, against the floor.

The floor is one plain ``IMap.get`` per request: the least any decision can cost. Each
scenario runs ``--decisions`` decisions from ``--tasks`` concurrent asyncio tasks of one
process, for one hot key and for ``--keys`` keys, and the whole set is repeated
``--rounds`` times interleaved (floor, lock, cas, entry_processor, floor, ...) so that the
noise of a shared machine falls on every contender alike, after one unrecorded warm-up
round (the members' JIT). Reported: the median over
rounds of decisions/s and of p50/p99 latency, and each contender's throughput as a ratio
of the floor's.

Needs a running cluster (``make up``):  python -m benchmarks.inprocess
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from api.settings import Settings
from limiter import STRATEGY_NAMES, connect, create_strategy

RESULTS = Path(__file__).parent / "results"
FLOOR = "floor (IMap.get)"


async def run_scenario(
    call: Callable[[int], Awaitable[Any]], decisions: int, tasks: int
) -> tuple[float, float, float]:
    """Returns (decisions per second, p50 ms, p99 ms)."""
    latencies: list[float] = []
    counter = iter(range(decisions))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return decisions / elapsed, cuts[49] * 1000, cuts[98] * 1000


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env(
        decision_timeout_seconds=30.0,
        lock_wait_seconds=25.0,
        lock_lease_seconds=40.0,
        cas_max_attempts=10_000,
    )
    link = await connect(settings)
    counters = await link.get_map(f"ratelimit.counters.bench-{uuid.uuid4().hex[:8]}")
    strategies = {name: create_strategy(settings, counters, name=name) for name in STRATEGY_NAMES}
    limit, window = 2_000_000_000, 3600  # everything admitted: every decision writes
    run_id = uuid.uuid4().hex[:6]
    raw: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    try:
        await counters.put("floor-hot", 1)
        await counters.put_all({f"floor-{k}": 1 for k in range(args.keys)})
        # Round 0 warms the members' JIT and the connections up, and is not recorded.
        for round_ in range(-1 if args.warmup else 0, args.rounds):
            for spread in ("hot key", f"{args.keys} keys"):

                def key(i: int, hot: bool = spread == "hot key") -> str:
                    return "hot" if hot else str(i % args.keys)

                contenders: dict[str, Callable[[int], Awaitable[Any]]] = {
                    FLOOR: lambda i: counters.get(f"floor-{key(i)}"),
                }
                for name, strategy in strategies.items():

                    def decide(i: int, s: Any = strategy, n: str = name) -> Awaitable[Any]:
                        decided = s.decide(f"{run_id}-{n}-{key(i)}", limit, window)
                        return cast(Awaitable[Any], decided)

                    contenders[name] = decide
                for label, call in contenders.items():
                    result = await run_scenario(call, args.decisions, args.tasks)
                    if round_ < 0:
                        continue
                    raw.setdefault(spread, {}).setdefault(label, []).append(result)
                    print(
                        f"round {round_ + 1}/{args.rounds} {spread:>12} {label:>17}: "
                        f"{result[0]:8.0f}/s p50 {result[1]:6.2f} ms p99 {result[2]:6.2f} ms",
                        flush=True,
                    )
    finally:
        for strategy in strategies.values():
            await strategy.close()
        await counters.destroy()
        await link.close()
    summary: dict[str, Any] = {
        "tasks": args.tasks,
        "decisions": args.decisions,
        "rounds": args.rounds,
        "scenarios": {},
    }
    for spread, by_name in raw.items():
        floor_rate = statistics.median(r[0] for r in by_name[FLOOR])
        summary["scenarios"][spread] = {
            name: {
                "per_second": statistics.median(r[0] for r in runs),
                "p50_ms": statistics.median(r[1] for r in runs),
                "p99_ms": statistics.median(r[2] for r in runs),
                "ratio_to_floor": statistics.median(r[0] for r in runs) / floor_rate,
            }
            for name, runs in by_name.items()
        }
    return summary


def as_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['tasks']} concurrent tasks, {summary['decisions']} decisions per run, "
        f"median of {summary['rounds']} interleaved rounds",
        "",
        "| scenario | contender | decisions/s | vs floor | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for spread, by_name in summary["scenarios"].items():
        for name, r in by_name.items():
            lines.append(
                f"| {spread} | {name} | {r['per_second']:.0f} | "
                f"{r['ratio_to_floor']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--decisions", type=int, default=4000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the unrecorded warm-up round"
    )
    summary = asyncio.run(main(parser.parse_args()))
    table = as_markdown(summary)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"inprocess-{stamp}.json").write_text(json.dumps(summary, indent=2))
    (RESULTS / f"inprocess-{stamp}.md").write_text(table + "\n")
