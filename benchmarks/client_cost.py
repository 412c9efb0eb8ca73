"""What one cluster call costs a replica's process: CPU and wall time per operation of the
Hazelcast client, one operation at a time, on uvloop as in a replica.

End to end, a decision's replica CPU is its HTTP handling plus its share of a cluster
call; this measures the call alone, so that the share can be told apart:

- ``IMap.get`` of one small value (the least a call costs);
- one shard call carrying 1, 3 and 10 windows, as the strategy sends it
  (:func:`limiter.processor_wire.shard_call_data` to a
  :class:`limiter.processor_wire.PinnedKey`; end to end at 32 connections a call carries
  about three);
- ``decide`` for 1, 3 and 10 clients at once through the entry processor strategy (one
  shard), which adds the strategy's queueing to the call.

CPU is this process's (``time.process_time``): the client's Python code, its socket
system calls and the event loop, not the members'. Median of ``--rounds``.

Needs a running cluster (``make up``):  python -m benchmarks.client_cost
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from api.settings import Settings
from limiter import connect
from limiter.base import Quota
from limiter.entry_processor import EntryProcessorStrategy, shard_entry_of
from limiter.processor_wire import MEMBER_CLOCK, PinnedKey, shard_call_data
from limiter.rule import Alignment

#: Far above anything a run sends: every decision is admitted and writes.
LIMIT = 2_000_000_000
WINDOW_SECONDS = 3600
CLIENTS = 3000


async def per_operation(
    operation: Callable[[int], Awaitable[Any]], operations: int
) -> tuple[float, float]:
    """(CPU µs, wall µs) per operation, ``operations`` of them one after the other."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(operations):
        await operation(i)
    return (
        (time.process_time() - cpu) * 1e6 / operations,
        (time.perf_counter() - wall) * 1e6 / operations,
    )


async def measure(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    settings = Settings.from_env(counter_shards=1)
    link = await connect(settings)
    counters = await link.get_map(f"ratelimit.counters.cost-{uuid.uuid4().hex[:8]}")
    strategy = EntryProcessorStrategy.from_settings(counters, settings)
    quotas = [
        Quota(str(uuid.uuid4()), LIMIT, WINDOW_SECONDS, Alignment.CLOCK) for _ in range(CLIENTS)
    ]
    await counters.put("one-value", 1)

    # Serialised and hashed once, as the strategy does for each of its lanes.
    shard_key = PinnedKey(shard_entry_of("any", 1))

    def shard_call(windows: int) -> Callable[[int], Awaitable[Any]]:
        async def call(i: int) -> Any:
            batch = [(quotas[(i * windows + j) % CLIENTS], [1]) for j in range(windows)]
            processor = shard_call_data(MEMBER_CLOCK, strategy.expiry_grace_ms, batch)
            return await strategy.shards.execute_on_key(shard_key, processor)

        return call

    def decisions(clients: int) -> Callable[[int], Awaitable[Any]]:
        def call(i: int) -> Awaitable[Any]:
            picked = (quotas[(i * clients + j) % CLIENTS] for j in range(clients))
            return asyncio.gather(
                *(strategy.decide(q.client_id, LIMIT, WINDOW_SECONDS) for q in picked)
            )

        return call

    operations: dict[str, Callable[[int], Awaitable[Any]]] = {
        "IMap.get": lambda i: counters.get("one-value"),
        **{f"shard call, {n} windows": shard_call(n) for n in (1, 3, 10)},
        **{f"decide, {n} clients at once": decisions(n) for n in (1, 3, 10)},
    }
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in operations}
    try:
        for round_ in range(-1, args.rounds):  # round -1 warms up and is not kept
            for label, operation in operations.items():
                measured = await per_operation(operation, args.operations)
                if round_ >= 0:
                    results[label].append(measured)
    finally:
        await strategy.close()
        await counters.destroy()
        await link.close()
    return results


def as_markdown(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.operations} operations one after the other, median of {args.rounds} rounds",
        "",
        "| operation | client CPU µs | wall µs |",
        "|---|---:|---:|",
    ]
    for label, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        lines.append(f"| {label} | {cpu:.0f} | {wall:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(as_markdown(uvloop.run(measure(args)), args))


if __name__ == "__main__":
    main()
