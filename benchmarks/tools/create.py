"""What the registry's write-through store costs a create: ``POST /bucket`` latency with
the members' PostgreSQL MapStore on and off, side by side on one stack.

For each mode the members are (re)started with the store enabled or not
(``ratelimit.registry.store.enabled``, see hazelcast/hazelcast.xml) and one replica is
started on them (production settings); after a warm-up, ``--creates`` clients are created
one at a time on one connection (the latency a user sees), then as many again from
``--concurrency`` connections at once (latency under load and creates per second).
Rounds alternate the modes, so the noise of a shared machine falls on both alike; the
report gives the median over rounds of each figure.

The benchmark runs on ports of its own (members 5961+, its replica 20961, PostgreSQL
21001; RATELIMIT_BENCH_BASE_PORT moves them) in ``.run/create-<port>``, and stops
everything at the end.

    python -m benchmarks.tools.create [--creates 500] [--concurrency 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

import httpx

from benchmarks.stack import ADMIN, ADMIN_TOKEN, bench_stack
from benchmarks.stats import percentile
from stack import Stack

MODES = {"memory only": False, "write-through": True}


def create_stack(store: bool) -> Stack:
    """The benchmark stack of this tool, its members with the store on or off."""
    return bench_stack(name="create", default_base_port=5961, registry_store=store, fresh=False)


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": percentile(latencies, 0.90) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "creates_per_s": len(latencies) / seconds,
    }


async def creates(url: str, count: int, concurrency: int) -> dict[str, float]:
    """``count`` creates from ``concurrency`` connections; every answer must be a 201."""
    latencies: list[float] = []
    remaining = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=ADMIN, limits=limits, timeout=30) as http:

        async def worker() -> None:
            for _ in remaining:
                body = {"name": f"bench-{uuid.uuid4().hex}", "limit": 100}
                started = time.perf_counter()
                response = await http.post("/bucket", json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise RuntimeError(f"POST /bucket answered {response.status_code}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return summary(latencies, seconds)


def measure(store: bool, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    stack = create_stack(store)
    stack.stop()  # members of the other mode: they must restart with this one's setting
    stack.start_cluster(3)
    stack.start_replicas(1, {"RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN})
    url = f"http://127.0.0.1:{stack.replica_port(0)}"
    asyncio.run(creates(url, 100, 4))  # warm-up: connections, JIT, the database's caches
    return {
        "sequential": asyncio.run(creates(url, args.creates, 1)),
        f"concurrency {args.concurrency}": asyncio.run(
            creates(url, args.creates, args.concurrency)
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.create", description=__doc__)
    parser.add_argument("--creates", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, dict[str, float]]]] = {mode: [] for mode in MODES}
    try:
        for round_ in range(args.rounds):
            for mode, store in MODES.items():
                result = measure(store, args)
                runs[mode].append(result)
                print(f"round {round_ + 1}, {mode}: {json.dumps(result)}", flush=True)
    finally:
        create_stack(True).stop()
    print(f"\nPOST /bucket, {args.creates} creates per run, median of {args.rounds} rounds")
    print("| store | load | median ms | p90 ms | p99 ms | creates/s |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, results in runs.items():
        for load in results[0]:
            row: dict[str, Any] = {
                key: statistics.median(r[load][key] for r in results) for key in results[0][load]
            }
            print(
                f"| {mode} | {load} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {row['creates_per_s']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
