"""Bytes per active window in the cluster, from the members' own metrics.

Starts the benchmark's members (``RATELIMIT_BENCH_BASE_PORT``, as
:mod:`benchmarks.endtoend`), opens one window for each of ``--clients`` clients with each
strategy (one admitted decision per client, in process, ``--tasks`` at a time), then
reads what every member's JMX exporter reports for that strategy's counter map:
``hazelcast_map_ownedEntryCount`` and ``hazelcast_map_ownedEntryMemoryCost`` (Hazelcast's
estimate of key, value and record), and the same for the backups.

The entry processor's shard layout (``RATELIMIT_COUNTER_SHARDS`` shard entries) keeps
its windows as objects inside a few entries, and Hazelcast reports the memory cost of an
OBJECT entry as 0; its windows are measured from the members' heaps instead: the heap
in use after a full collection (``jcmd GC.run``, then ``jvm_memory_used_bytes`` from the
JMX exporter), summed over the members, after a tenth of the windows were opened and
after all of them (so the first use of a map is not counted as windows). That
difference holds both copies of every window (backup count 1).

    python -m benchmarks.tools.memory [--clients 100000] [--tasks 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

from api.settings import Settings
from benchmarks.stack import RESULTS, bench_stack
from limiter import STRATEGY_NAMES, connect, create_strategy
from limiter.settings import StrategyName
from stack import LOOPBACK, Stack, poll_until

HEAP_USED = re.compile(r'^jvm_memory_used_bytes\{area="heap"\} ([\d.eE+-]+)$', re.MULTILINE)
METRIC = re.compile(r'^(hazelcast_map_\w+)\{map="([^"]+)"\} ([\d.eE+-]+)$', re.MULTILINE)
MEASURED = ("ownedEntryCount", "ownedEntryMemoryCost", "backupEntryCount", "backupEntryMemoryCost")


def member_metrics(stack: Stack, index: int) -> str:
    """What member ``index``'s JMX exporter publishes right now."""
    url = f"http://{LOOPBACK}:{stack.member_metrics_port(index)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def map_metrics(stack: Stack, map_name: str) -> dict[str, float]:
    """The counter map's entries and memory, summed over every member's exporter."""
    totals = dict.fromkeys(MEASURED, 0.0)
    for index in range(stack.members):
        for name, found_map, value in METRIC.findall(member_metrics(stack, index)):
            short = name.removeprefix("hazelcast_map_")
            if found_map == map_name and short in totals:
                totals[short] += float(value)
    return totals


def heap_after_collection(stack: Stack) -> float:
    """Bytes in use on every member's heap right after a full collection, summed."""
    total = 0.0
    for index in range(stack.members):
        pid = stack.pid_of(stack.member_name(index))
        if pid is None:
            raise RuntimeError(f"member {index + 1} is not running")
        subprocess.run(["jcmd", str(pid), "GC.run"], check=True, capture_output=True, timeout=60)
        found = HEAP_USED.search(member_metrics(stack, index))
        if found is None:
            raise RuntimeError(f"member {index + 1} reports no heap in use")
        total += float(found.group(1))
    return total


def client_id(run_id: str, i: int) -> str:
    """Client ``i`` of the run ``run_id`` (8 hex digits), as a UUID4 like the registry's."""
    return str(uuid.UUID(int=(int(run_id, 16) << 64) | i, version=4))


async def open_windows(
    settings: Settings,
    strategy: StrategyName,
    map_name: str,
    clients: int,
    tasks: int,
    first: int = 0,
    run_id: str = "",
) -> None:
    """Opens the windows of clients ``first`` to ``clients - 1`` of the run ``run_id``.

    Each client id has the form of the registry's (a random UUID, :func:`client_id`): the
    shard layout keeps such a key in 16 bytes, and any other key as a string, so ids of
    another form would measure a window the service never stores."""
    link = await connect(settings)
    try:
        counters = await link.get_map(map_name)
        limiter = create_strategy(settings, counters, name=strategy)
        run_id = run_id or uuid.uuid4().hex[:8]
        pending = iter(range(first, clients))

        async def worker() -> None:
            for i in pending:
                decision = await limiter.decide(client_id(run_id, i), 100, 3600)
                if not decision.allowed:
                    raise RuntimeError(f"client {i} was denied its first request: {decision}")

        await asyncio.gather(*(worker() for _ in range(tasks)))
        await limiter.close()
    finally:
        await link.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument(
        "--strategies", nargs="+", choices=STRATEGY_NAMES, default=list(STRATEGY_NAMES)
    )
    args = parser.parse_args()
    stack = bench_stack()
    settings = Settings.from_env(
        hazelcast_members=",".join(stack.member_addresses(stack.members)),
        hazelcast_cluster_name=stack.cluster_name,
        decision_timeout_seconds=30.0,
        expiry_grace_seconds=31.0,
        lock_wait_seconds=25.0,
        lock_lease_seconds=40.0,
    )
    results: dict[str, Any] = {"clients": args.clients, "strategies": {}}
    try:
        stack.start_cluster(stack.members)
        for strategy in args.strategies:
            map_name = f"ratelimit.counters.memory-{strategy}-{uuid.uuid4().hex[:6]}"
            sharded = strategy == "entry_processor"
            run_id = uuid.uuid4().hex[:8]
            # The shard layout is measured between a tenth of the windows and all of them,
            # so what the first use of a map costs (its record stores, its metrics) is
            # not counted as windows.
            first = args.clients // 10 if sharded else 0
            started = time.monotonic()
            if first:
                asyncio.run(
                    open_windows(settings, strategy, map_name, first, args.tasks, 0, run_id)
                )
            heap_before = heap_after_collection(stack) if sharded else 0.0
            asyncio.run(
                open_windows(settings, strategy, map_name, args.clients, args.tasks, first, run_id)
            )
            seconds = time.monotonic() - started
            if sharded:
                heap_after = heap_after_collection(stack)
                with_backup = (heap_after - heap_before) / (args.clients - first)
                row = {
                    "layout": f"{settings.counter_shards} shard entries (heap measured)",
                    "heap_before": heap_before,
                    "heap_after": heap_after,
                    "windows_measured": args.clients - first,
                    "seconds_to_open": seconds,
                    "bytes_per_window": with_backup / 2,
                    "bytes_per_window_with_backup": with_backup,
                }
                windows = args.clients
            else:

                def all_reported(name: str = map_name) -> bool:
                    return map_metrics(stack, name)["ownedEntryCount"] >= int(args.clients)

                # Members publish their metrics every few seconds: wait for every window.
                poll_until(
                    all_reported,
                    60,
                    f"the members to report {args.clients} entries of {map_name}",
                )
                found = map_metrics(stack, map_name)
                row = {
                    **found,
                    "layout": "one entry per window (Hazelcast's memory cost)",
                    "seconds_to_open": seconds,
                    "bytes_per_window": found["ownedEntryMemoryCost"] / found["ownedEntryCount"],
                    "bytes_per_window_with_backup": (
                        found["ownedEntryMemoryCost"] + found["backupEntryMemoryCost"]
                    )
                    / found["ownedEntryCount"],
                }
                windows = int(found["ownedEntryCount"])
            results["strategies"][strategy] = row
            print(
                f"{strategy:>15}: {windows} windows, {row['layout']}: "
                f"{row['bytes_per_window']:.0f} B each "
                f"({row['bytes_per_window_with_backup']:.0f} B with its backup), "
                f"opened in {seconds:.0f}s",
                flush=True,
            )
    finally:
        stack.stop()
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"memory-{stamp}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
