"""How the members' partition threads share the work of a spread load, per shard count.

Starts the benchmark's stack (``RATELIMIT_BENCH_BASE_PORT``), creates ``--clients``
clients far under their limits, then for each ``--counter-shards`` value (interleaved,
``--rounds`` times, so the noise of a shared machine falls on each alike) restarts the
replicas on ``entry_processor`` with that many shard entries, warms up, and runs wrk
through nginx spread over the clients for ``--duration`` seconds, with ``/health`` right
before it for the ratio. Around the spread run it reads every member thread's CPU from
``/proc/<pid>/task/*/stat``, names the threads with ``jcmd Thread.print``, and reports:

- each partition thread's share of all partition-thread CPU (``partition-operation``
  threads of every member), the busiest one's first: the figure that says whether the
  layout spreads the work or leaves it on one thread;
- decisions per second, and their ratio to ``/health`` of the same round;
- the load average at the end of the run (a shared 2-core machine bends every figure).

``--shard-calls`` runs each shard count above 1 with each way of calling the cluster
(``RATELIMIT_SHARD_CALLS``): ``fan_out``, one call per batch over every shard entry it
touches, and ``per_shard``, one call per shard entry (what every shard count did before
the fan-out); the variants are interleaved round by round on one stack.

Why a thread's share and not its CPU: with one shard entry the whole cluster's decisions
run on the partition thread that owns it, so the capacity of a cluster of any size is
that thread's; the share shows how far that is from the even spread over all of them.

    python -m benchmarks.tools.spread [--counter-shards 1 271] [--clients 1000]
        [--shard-calls fan_out per_shard] [--connections 32] [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.clients import create_client, create_clients, warm_registry
from benchmarks.load.wrk import run_wrk
from benchmarks.stack import ADMIN_TOKEN, MEMBERS, REPLICAS, RESULTS, bench_stack
from benchmarks.stats import load_now
from benchmarks.tools.cpu import ThreadTime, thread_times, tree_cpu_seconds
from benchmarks.tools.profile import java_thread_names
from stack import Stack

__all__ = ["partition_shares"]

#: Hazelcast's partition threads: ``hz.<instance>.partition-operation.thread-N``.
PARTITION_THREAD = re.compile(r"partition-operation\.thread-(\d+)$")


def partition_shares(
    before: Mapping[int, Mapping[int, ThreadTime]],
    after: Mapping[int, Mapping[int, ThreadTime]],
    names: Mapping[int, Mapping[int, str]],
) -> list[tuple[str, float, float]]:
    """Every partition thread's (``member-M/thread-N``, CPU seconds, share of all
    partition threads' CPU) between two readings of each member's threads, busiest first."""
    used: list[tuple[str, float]] = []
    for member, threads in after.items():
        for tid, now in threads.items():
            found = PARTITION_THREAD.search(names[member].get(tid, ""))
            if found is None:
                continue
            spent = now.minus(before[member].get(tid))
            used.append(
                (
                    f"member-{member + 1}/thread-{found[1]}",
                    spent.user_seconds + spent.system_seconds,
                )
            )
    total = sum(seconds for _, seconds in used) or 1.0
    return sorted(((n, s, s / total) for n, s in used), key=lambda row: -row[1])


def member_groups(
    before: Mapping[int, Mapping[int, ThreadTime]],
    after: Mapping[int, Mapping[int, ThreadTime]],
    names: Mapping[int, Mapping[int, str]],
) -> dict[str, float]:
    """CPU seconds of every member's threads by what they do (the name without its
    instance and number: ``partition-operation.thread-N``, ``C2 CompilerThreadN``...),
    all members together, the busiest group first."""
    groups: dict[str, float] = {}
    for member, threads in after.items():
        for tid, now in threads.items():
            name = names[member].get(tid, "?")
            group = re.sub(r"\d+", "N", name.removeprefix("hz.").split(".", 1)[-1])
            spent = now.minus(before[member].get(tid))
            groups[group] = groups.get(group, 0.0) + spent.user_seconds + spent.system_seconds
    return dict(sorted(groups.items(), key=lambda item: -item[1]))


def member_threads(stack: Stack) -> dict[int, dict[int, ThreadTime]]:
    pids = {i: stack.pid_of(stack.member_name(i)) or 0 for i in range(MEMBERS)}
    return {i: thread_times([pid]) for i, pid in pids.items()}


def variants(
    counter_shards: Sequence[int], shard_calls: Sequence[str]
) -> list[tuple[str, int, str]]:
    """Each (label, shard count, shard calls) to run: one shard has one way of calling."""
    out = []
    for shards in counter_shards:
        for calls in [shard_calls[0]] if shards == 1 else shard_calls:
            out.append((str(shards) if shards == 1 else f"{shards} {calls}", shards, calls))
    return out


def restart_replicas(stack: Stack, shards: int, calls: str = "fan_out") -> None:
    stack.stop([stack.replica_name(i) for i in range(REPLICAS)])
    stack.start_replicas(
        REPLICAS,
        {
            "RATELIMIT_STRATEGY": "entry_processor",
            "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
            "RATELIMIT_COUNTERS_MAP": f"ratelimit.counters.spread-{uuid.uuid4().hex[:8]}",
            "RATELIMIT_COUNTER_SHARDS": str(shards),
            "RATELIMIT_SHARD_CALLS": calls,
        },
    )


def one_run(stack: Stack, args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    """``/health``, then the spread load with the members' threads read around it."""
    base = f"http://127.0.0.1:{stack.nginx_port}"
    urls = [f"http://127.0.0.1:{stack.replica_port(i)}" for i in range(REPLICAS)]
    health = run_wrk(f"{base}/health", args.connections, args.duration)
    asyncio.run(warm_registry(urls, ids))
    members = [stack.pid_of(stack.member_name(i)) or 0 for i in range(MEMBERS)]
    replicas = [stack.pid_of(stack.replica_name(i)) or 0 for i in range(REPLICAS)]
    cpu_before = (tree_cpu_seconds(members), tree_cpu_seconds(replicas))
    before = member_threads(stack)
    seen = run_wrk(f"{base}/example", args.connections, args.duration, rotate=("X-Api-Id", ids))
    after = member_threads(stack)
    cpu_after = (tree_cpu_seconds(members), tree_cpu_seconds(replicas))
    decisions = max(seen.per_second * args.duration, 1.0)
    names = {i: java_thread_names(stack.pid_of(stack.member_name(i)) or 0) for i in after}
    shares = partition_shares(before, after, names)
    over = sum(n for status, n in seen.statuses.items() if status != 200)
    return {
        "per_second": seen.per_second,
        "health_per_second": health.per_second,
        "ratio_to_health": seen.per_second / max(health.per_second, 1.0),
        "p99_ms": seen.p99_ms,
        "not_200": over + seen.socket_error_count,
        "busiest_share": shares[0][2] if shares else 0.0,
        "busiest_thread": shares[0][0] if shares else "",
        # CPU per decision of the members and of the replicas (their worker processes
        # included): where a layout's calls cost.
        "member_cpu_us": (cpu_after[0] - cpu_before[0]) / decisions * 1e6,
        "replica_cpu_us": (cpu_after[1] - cpu_before[1]) / decisions * 1e6,
        "member_cpu_us_by_thread": {
            group: seconds / decisions * 1e6
            for group, seconds in member_groups(before, after, names).items()
        },
        "threads": [[name, seconds, share] for name, seconds, share in shares],
        "load_average": load_now(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = bench_stack()
    base = f"http://127.0.0.1:{stack.nginx_port}"
    layouts = variants(args.counter_shards, args.shard_calls)
    raw: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in layouts}
    try:
        stack.start_cluster(MEMBERS)
        stack.start_parts([stack.demo_app_part(), stack.nginx_part(REPLICAS)])
        stack.start_replicas(REPLICAS, {"RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN})
        ids = asyncio.run(create_clients(base, args.clients, 10**9))
        for round_ in range(args.rounds):
            for label, shards, calls in layouts:
                restart_replicas(stack, shards, calls)
                warm = create_client(base, 10**9)
                run_wrk(f"{base}/example", args.connections, 2, headers={"X-Api-Id": warm})
                run_wrk(f"{base}/example", args.connections, args.warmup, rotate=("X-Api-Id", ids))
                row = one_run(stack, args, ids)
                raw[label].append(row)
                print(
                    f"shards={label:>14} round {round_ + 1}/{args.rounds}: "
                    f"{row['per_second']:7.0f}/s ({row['ratio_to_health']:.2f} x /health), "
                    f"busiest partition thread {row['busiest_share']:.2f} "
                    f"({row['busiest_thread']}), p99 {row['p99_ms']:.1f} ms, "
                    f"not 200: {row['not_200']}, CPU per decision: members "
                    f"{row['member_cpu_us']:.0f} us, replicas {row['replica_cpu_us']:.0f} us, "
                    f"load {row['load_average']:.2f}",
                    flush=True,
                )
    finally:
        stack.stop()
    return {
        "command": " ".join(["python -m benchmarks.tools.spread", *sys.argv[1:]]),
        "clients": args.clients,
        "connections": args.connections,
        "duration_seconds": args.duration,
        "by_shards": {
            label: {
                "per_second": statistics.median(r["per_second"] for r in runs),
                "ratio_to_health": statistics.median(r["ratio_to_health"] for r in runs),
                "busiest_share": statistics.median(r["busiest_share"] for r in runs),
                "member_cpu_us": statistics.median(r["member_cpu_us"] for r in runs),
                "replica_cpu_us": statistics.median(r["replica_cpu_us"] for r in runs),
                "load_average": max(r["load_average"] for r in runs),
                "runs": runs,
            }
            for label, runs in raw.items()
        },
    }


def as_markdown(summary: Mapping[str, Any]) -> str:
    lines = [
        "| shards | decisions/s | x /health | busiest partition thread "
        "| CPU/decision members | CPU/decision replicas | load |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shards, row in summary["by_shards"].items():
        lines.append(
            f"| {shards} | {row['per_second']:.0f} | {row['ratio_to_health']:.2f} | "
            f"{row['busiest_share']:.2f} | {row['member_cpu_us']:.0f} us | "
            f"{row['replica_cpu_us']:.0f} us | {row['load_average']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tools.spread",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--counter-shards", type=int, nargs="+", default=[1, 271])
    parser.add_argument(
        "--shard-calls",
        nargs="+",
        default=["fan_out"],
        choices=["fan_out", "per_shard"],
        help="RATELIMIT_SHARD_CALLS values to run each shard count above 1 with",
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=8, help="seconds of spread load first")
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args(argv)


def main() -> int:
    summary = run(parse_args(sys.argv[1:]))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"spread-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(summary, indent=2))
    print(as_markdown(summary))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
