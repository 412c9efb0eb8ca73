"""End-to-end benchmark: one client through nginx and 3 replicas, per strategy, against
``/health`` on the same stack, with wrk.

For each strategy the replicas are restarted with it (production defaults otherwise),
and each round runs, one after the other with the same wrk settings:

- ``/health``: the ceiling of the path (nginx, a replica, no cluster call);
- ``under``: one client far under its limit (10^9 per hour): every request is a decision
  that writes;
- ``past``: one client long past its limit (1 per hour, spent before the run);
- ``exact``: one client with a limit of ``--exact-limit`` flooded for the same time:
  exactly that many 200s must come back (or every request, if fewer were sent), and no
  other status than 200 and 429;
- ``spread-N`` for each N of ``--spread``: requests spread at random over N clients far
  under their limits (created once, before the first strategy).

Each run also reads the CPU time the replicas (Sanic main and workers), the members
(JVMs), nginx and the registry's database used during it, from ``/proc``, and reports it
per request, with the part of the members' CPU that their JIT compilers used (large in a
cluster started minutes ago, nothing in a long-running one) and the busy CPU of the whole
machine (wrk and anything else on the same cores included), and from the replicas'
metrics the requests one cluster call decided and the client records read from the
cluster per request (a spread run whose clients the replicas' memos do not hold pays a
cluster read for each).

Every run is checked as it goes: a run with over-admission, a ``contended`` denial of the
client under its limit, an answer marked ``X-RateLimit-Degraded``, a socket error or
a status outside 200/429 is marked FAILED in the report (and the exit code is 1).
Rounds are interleaved (health, under, past, exact, per strategy, repeated) so that the
noise of a shared machine falls on each alike; the report gives medians and the ratio of
each rate to ``/health`` measured in the same round.

The benchmark starts its own cluster and parts on ports of their own (members 5901+,
HTTP 20901+; RATELIMIT_BENCH_BASE_PORT moves both) in ``.run/bench-<port>``, and stops
them at the end.

    python -m benchmarks.endtoend [--connections 64] [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from benchmarks.clients import create_client, create_clients, warm_registry
from benchmarks.endtoend.checks import problems
from benchmarks.endtoend.counters import registry_reads, replica_counters, requests_per_call
from benchmarks.load.wrk import run_wrk
from benchmarks.stack import ADMIN_TOKEN, REPLICAS, RESULTS, bench_stack
from benchmarks.stats import load_now
from benchmarks.tools.cpu import CpuMeter
from limiter import STRATEGY_NAMES
from stack import Stack

SCENARIOS = ("health", "under", "past", "exact")


def variants(
    strategies: Sequence[str], counter_shards: Sequence[int]
) -> list[tuple[str, str, dict[str, str]]]:
    """What to run: each strategy, and the entry processor once per shard count asked for
    (label, strategy, the replicas' extra settings)."""
    runs: list[tuple[str, str, dict[str, str]]] = []
    for strategy in strategies:
        if strategy == "entry_processor" and counter_shards:
            runs.extend(
                (f"{strategy} shards={n}", strategy, {"RATELIMIT_COUNTER_SHARDS": str(n)})
                for n in counter_shards
            )
        else:
            runs.append((strategy, strategy, {}))
    return runs


def seconds_left_in_hour() -> float:
    return 3600 - time.time() % 3600


def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = bench_stack(args.member_option)
    base = f"http://127.0.0.1:{stack.nginx_port}"
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    scenarios = [*SCENARIOS, *(f"spread-{n}" for n in args.spread)]
    needed = (len(args.strategies) * len(scenarios) * args.rounds + 1) * (args.duration + 2)
    if seconds_left_in_hour() < needed + 60:
        wait = seconds_left_in_hour() + 1
        print(f"waiting {wait:.0f}s for the next hour: a window edge would reset the clients")
        time.sleep(wait)
    try:
        stack.start_cluster(3)
        stack.start_parts([stack.demo_app_part(), stack.nginx_part(REPLICAS)])
        spread_ids = create_spread_clients(stack, base, args.spread)
        for label, strategy, layout in variants(args.strategies, args.counter_shards):
            meter = restart_replicas(stack, args, strategy, layout)
            # Warm-up, not recorded: connections, the members' JIT, near caches.
            warm = create_client(base, 10**9)
            run_wrk(f"{base}/example", args.connections, 2, headers={"X-Api-Id": warm})
            for round_ in range(args.rounds):
                clients = {
                    "under": create_client(base, 10**9),
                    "past": create_client(base, 1),
                    "exact": create_client(base, args.exact_limit),
                }
                httpx.get(f"{base}/example", headers={"X-Api-Id": clients["past"]})
                for scenario in scenarios:
                    result = run_scenario(
                        stack, args, meter, scenario, clients, spread_ids.get(scenario)
                    )
                    raw.setdefault(label, {}).setdefault(scenario, []).append(result)
                    print_run(label, f"round {round_ + 1}/{args.rounds}", scenario, result)
    finally:
        stack.stop()
    return summarise(raw, args)


def create_spread_clients(stack: Stack, base: str, spreads: Sequence[int]) -> dict[str, list[str]]:
    """The clients of each spread scenario, created once before the first strategy."""
    spread_ids: dict[str, list[str]] = {}
    if spreads:
        stack.start_replicas(REPLICAS, {"RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN})
        for count in spreads:
            started = time.monotonic()
            spread_ids[f"spread-{count}"] = asyncio.run(create_clients(base, count, 10**9))
            print(f"created {count} clients in {time.monotonic() - started:.1f}s", flush=True)
    return spread_ids


def restart_replicas(
    stack: Stack, args: argparse.Namespace, strategy: str, layout: dict[str, str]
) -> CpuMeter:
    """The replicas restarted on ``strategy``, and a meter of the parts' CPU."""
    stack.stop([stack.replica_name(i) for i in range(REPLICAS)])
    # The run's own settings come last: a --replica-setting cannot relabel a run.
    env = {
        **dict(args.replica_setting),
        "RATELIMIT_STRATEGY": strategy,
        "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
        "RATELIMIT_COUNTERS_MAP": f"ratelimit.counters.bench-{uuid.uuid4().hex[:8]}",
        **layout,
    }
    stack.start_replicas(REPLICAS, env)
    return CpuMeter(
        {
            "replicas": [stack.pid_of(stack.replica_name(i)) for i in range(REPLICAS)],
            "members": [stack.pid_of(stack.member_name(i)) for i in range(3)],
            "nginx": [stack.pid_of("nginx")],
            "database": [stack.pid_of(stack.DATABASE)],
        },
        jit_of=["members"],
        machine=True,
    )


def run_scenario(
    stack: Stack,
    args: argparse.Namespace,
    meter: CpuMeter,
    scenario: str,
    clients: dict[str, str],
    spread: list[str] | None,
) -> dict[str, Any]:
    """One wrk run of ``scenario``, with the CPU, the replicas' counters and the load read
    around it, and what is wrong with it, if anything."""
    base = f"http://127.0.0.1:{stack.nginx_port}"
    urls = [f"http://127.0.0.1:{stack.replica_port(i)}" for i in range(REPLICAS)]
    path = "/health" if scenario == "health" else "/example"
    headers = {"X-Api-Id": clients[scenario]} if scenario in clients else {}
    if spread is not None and not args.cold_registry:
        # Right before: a replica's memo keeps a record for
        # RATELIMIT_REGISTRY_MEMO_SECONDS from its read, which the
        # scenarios before this one can outlast.
        asyncio.run(warm_registry(urls, spread))
    cpu_before = meter.read()
    counters_before = replica_counters(urls)
    seen = run_wrk(
        f"{base}{path}",
        args.connections,
        args.duration,
        headers=headers,
        rotate=("X-Api-Id", spread) if spread is not None else None,
    )
    cpu_ms = meter.since(cpu_before).per_request_ms(seen.requests)
    counters_after = replica_counters(urls)
    result = {k: v for k, v in dataclasses.asdict(seen).items() if k != "output"}
    result["cpu_ms_per_request"] = cpu_ms
    result["requests_per_call"] = requests_per_call(counters_before, counters_after)
    result["registry_reads_per_request"] = registry_reads(counters_before, counters_after) / max(
        seen.requests, 1
    )
    result["problems"] = problems(scenario, seen, args.exact_limit)
    result["load_average"] = load_now()
    return result


def print_run(label: str, round_label: str, scenario: str, result: dict[str, Any]) -> None:
    cpu_ms = result["cpu_ms_per_request"]
    mark = "FAILED " + "; ".join(result["problems"]) if result["problems"] else "ok"
    print(
        f"{label:>15} {round_label} {scenario:>6}: "
        f"{result['per_second']:8.0f}/s p50 {result['p50_ms']:6.2f} ms "
        f"p99 {result['p99_ms']:7.2f} ms cpu/request replicas "
        f"{cpu_ms['replicas']:.3f} members {cpu_ms['members']:.3f} "
        f"(JIT {cpu_ms['members_jit']:.3f}) database {cpu_ms['database']:.3f} "
        f"machine {cpu_ms['machine']:.3f} ms, "
        f"{result['requests_per_call']:.2f} requests per cluster call, "
        f"{result['registry_reads_per_request']:.3f} registry reads per request "
        f"{result['statuses']} load {result['load_average']:.2f} {mark}",
        flush=True,
    )


def summarise(
    raw: dict[str, dict[str, list[dict[str, Any]]]], args: argparse.Namespace
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "connections": args.connections,
        "duration_seconds": args.duration,
        "rounds": args.rounds,
        "exact_limit": args.exact_limit,
        "command": " ".join(["python -m benchmarks.endtoend", *sys.argv[1:]]),
        "strategies": {},
    }
    for strategy, by_scenario in raw.items():
        health = by_scenario["health"]
        rows = {}
        for scenario, runs in by_scenario.items():
            ratios = [r["per_second"] / h["per_second"] for r, h in zip(runs, health, strict=True)]
            rows[scenario] = {
                "per_second": statistics.median(r["per_second"] for r in runs),
                "ratio_to_health": statistics.median(ratios),
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "cpu_ms_per_request": {
                    group: statistics.median(r["cpu_ms_per_request"][group] for r in runs)
                    for group in runs[0]["cpu_ms_per_request"]
                },
                "requests_per_call": statistics.median(r["requests_per_call"] for r in runs),
                "registry_reads_per_request": statistics.median(
                    r["registry_reads_per_request"] for r in runs
                ),
                "problems": [p for r in runs for p in r["problems"]],
                "load_average": max(r["load_average"] for r in runs),
                "runs": runs,
            }
        summary["strategies"][strategy] = rows
    return summary


def as_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"wrk, {summary['connections']} connections, {summary['duration_seconds']} s per run, "
        f"median of {summary['rounds']} interleaved rounds; ratio to `/health` of the same "
        "round; load: the highest 1-minute load average at the end of its runs",
        "",
        "| strategy | scenario | requests/s | vs /health | p50 ms | p99 ms "
        "| CPU ms/request: replicas | members | of which JIT | nginx | database "
        "| machine | requests per cluster call | registry reads per request | load | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for strategy, rows in summary["strategies"].items():
        for scenario, r in rows.items():
            check = "FAILED: " + "; ".join(r["problems"]) if r["problems"] else "exact"
            cpu = r["cpu_ms_per_request"]
            lines.append(
                f"| {strategy} | {scenario} | {r['per_second']:.0f} | "
                f"{r['ratio_to_health']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{cpu['replicas']:.3f} | {cpu['members']:.3f} | "
                f"{cpu['members_jit']:.3f} | {cpu['nginx']:.3f} | "
                f"{cpu['database']:.3f} | {cpu['machine']:.3f} | "
                f"{r['requests_per_call']:.2f} | {r['registry_reads_per_request']:.3f} | "
                f"{r['load_average']:.2f} | {check} |"
            )
    return "\n".join(lines)


def replica_setting(text: str) -> tuple[str, str]:
    """``RATELIMIT_NAME=VALUE`` as an environment variable for the replicas."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("RATELIMIT_"):
        raise argparse.ArgumentTypeError(f"expected RATELIMIT_NAME=VALUE, got {text!r}")
    return name, value


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.endtoend",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGY_NAMES))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exact-limit", type=int, default=1000)
    parser.add_argument(
        "--spread",
        type=int,
        nargs="*",
        default=[1000],
        help="client counts to spread a load over (default 1000; e.g. 1000 100000)",
    )
    parser.add_argument(
        "--counter-shards",
        type=int,
        nargs="*",
        default=[],
        help="run entry_processor once per shard count (RATELIMIT_COUNTER_SHARDS, 1 or more); "
        "default: the replicas' setting",
    )
    parser.add_argument(
        "--cold-registry",
        action="store_true",
        help="skip the warm-up that lets every replica see every spread client once",
    )
    parser.add_argument(
        "--replica-setting",
        type=replica_setting,
        action="append",
        default=[],
        metavar="RATELIMIT_NAME=VALUE",
        help="a setting for every replica, e.g. RATELIMIT_REGISTRY_MEMO_SECONDS=600 "
        "(repeatable; the replicas' defaults otherwise)",
    )
    parser.add_argument(
        "--member-option",
        action="append",
        default=[],
        help="a JVM option for every member, e.g. -Dhazelcast.io.thread.count=1 (repeatable)",
    )
    summary = run(parser.parse_args())
    table = as_markdown(summary)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"endtoend-{stamp}.json").write_text(json.dumps(summary, indent=2))
    (RESULTS / f"endtoend-{stamp}.md").write_text(table + "\n")
    failed = any(r["problems"] for rows in summary["strategies"].values() for r in rows.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
