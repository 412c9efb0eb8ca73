"""Two checkouts side by side: both stacks up at once, their wrk runs alternating, so
that the noise of a shared machine falls on both alike.

On this 2-core machine two runs of :mod:`benchmarks.endtoend` minutes apart differ by
up to a third in ``/health`` alone, more than most changes worth measuring. Here each
checkout gets its own benchmark stack (3 members, 3 replicas with ``--strategy``, by
default ``entry_processor``, nginx; ports moved apart with ``RATELIMIT_BENCH_BASE_PORT``)
and its own 1,000 clients,
both stay up, and each round runs ``/health`` on one, on the other, then the load spread
over the clients on one, on the other (the order flips every round). Each run reports
its rate, latency and the CPU per request of the replicas and members (``/proc``).

The report gives per round the ratio of the second checkout's spread rate to the
first's, which the machine's drift barely touches, and per checkout the medians and
the spread rate against its own ``/health``. Both stacks share the machine, so absolute
rates are lower than with one stack up.

Each checkout runs its own code (``api``, ``limiter``, ``stack``, ``benchmarks``): a side
process starts in it with it first on the path and loads this file only for
:func:`serve_side`. A
checkout needs what ``make bootstrap`` builds (the members' jars in
``hazelcast/target``)::

    git worktree add /tmp/before <commit>   # then make bootstrap there, or copy hazelcast/target
    python -m benchmarks.tools.paired /tmp/before . [--rounds 6] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

#: The first side's RATELIMIT_BENCH_BASE_PORT; the second's is 100 above.
BASE_PORT = 6901
SCENARIOS = ("health", "spread")
#: A side process: this file loaded by path (the checkout, its working directory, comes
#: first on the path, so everything else is imported from the checkout).
SIDE_ENTRY = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('paired_side', sys.argv[1]); "
    "side = importlib.util.module_from_spec(spec); spec.loader.exec_module(side); "
    "side.serve_side(*map(int, sys.argv[2:5]), *sys.argv[5:])"
)


def serve_side(
    clients: int, seconds: int, connections: int, strategy: str = "entry_processor"
) -> None:
    """One checkout's side (run in a process whose path starts with the checkout): starts
    its stack, prints ``ready``, then runs one scenario per line read from stdin and
    prints its figures as one JSON line, until stdin closes."""
    try:
        from benchmarks.clients import create_clients
        from benchmarks.load.wrk import run_wrk
        from benchmarks.stack import ADMIN_TOKEN, REPLICAS, bench_stack
        from benchmarks.tools.cpu import CpuMeter
    except ImportError:  # a checkout from before benchmarks/ had subpackages
        from benchmarks.cpu import CpuMeter  # type: ignore[import-not-found,no-redef]
        from benchmarks.endtoend import (  # type: ignore[attr-defined,no-redef]
            ADMIN_TOKEN,
            REPLICAS,
            bench_stack,
            create_clients,
        )
        from benchmarks.wrk import run_wrk  # type: ignore[import-not-found,no-redef]

    stack = bench_stack()
    base = f"http://127.0.0.1:{stack.nginx_port}"
    try:
        stack.start_cluster(3)
        stack.start_replicas(
            REPLICAS,
            {
                "RATELIMIT_STRATEGY": strategy,
                "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
                "RATELIMIT_COUNTERS_MAP": "ratelimit.counters.paired",
            },
        )
        stack.start_parts([stack.demo_app_part(), stack.nginx_part(REPLICAS)])
        ids = asyncio.run(create_clients(base, clients, 10**9))
        # Warm-up: every replica sees every client, the members' JIT compiles the paths.
        run_wrk(f"{base}/example", connections, 20, rotate=("X-Api-Id", ids))
        run_wrk(f"{base}/health", connections, 5)
        meter = CpuMeter(
            {
                "replicas": [stack.pid_of(stack.replica_name(i)) for i in range(REPLICAS)],
                "members": [stack.pid_of(stack.member_name(i)) for i in range(3)],
            }
        )
        print("ready", flush=True)
        for line in sys.stdin:
            scenario = line.strip()
            if scenario == "spread":
                url, rotate = f"{base}/example", ("X-Api-Id", ids)
            else:
                url, rotate = f"{base}/health", None
            before = meter.read()
            seen = run_wrk(url, connections, seconds, rotate=rotate)
            cpu = meter.since(before).per_request_ms(seen.requests)
            figures = {
                "scenario": scenario,
                "rate": seen.per_second,
                "p50_ms": seen.p50_ms,
                "p99_ms": seen.p99_ms,
                "statuses": {str(status): n for status, n in seen.statuses.items()},
                **cpu,
            }
            print(json.dumps(figures), flush=True)
    finally:
        stack.stop()


class Side:
    """A side process and its pipes."""

    def __init__(self, label: str, checkout: Path, port: int, args: argparse.Namespace) -> None:
        self.label = label
        log = (checkout / ".run").resolve()
        log.mkdir(exist_ok=True)
        self.log_path = log / f"paired-{label}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": str(checkout.resolve()),
            "RATELIMIT_BENCH_BASE_PORT": str(port),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SIDE_ENTRY,
                str(Path(__file__).resolve()),
                str(args.clients),
                str(args.seconds),
                str(args.connections),
                args.strategy,
            ],
            cwd=checkout,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_path.open("w"),
            text=True,
        )

    def read_line(self) -> str:
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]  # set by PIPE
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"side {self.label} stopped; see {self.log_path}")
        return line

    def run(self, scenario: str) -> dict[str, Any]:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]  # set by PIPE
        stdin.write(scenario + "\n")
        stdin.flush()
        return dict(json.loads(self.read_line()))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()


def report(labels: list[str], runs: list[dict[str, Any]]) -> str:
    """Medians per checkout and scenario, spread against health, and the ratio per round."""
    lines = [
        "| checkout | scenario | requests/s | p50 ms | p99 ms | replicas ms/request "
        "| members ms/request |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        for scenario in SCENARIOS:
            mine = [r for r in runs if r["label"] == label and r["scenario"] == scenario]
            lines.append(
                f"| {label} | {scenario} | {statistics.median(r['rate'] for r in mine):.0f} "
                f"| {statistics.median(r['p50_ms'] for r in mine):.2f} "
                f"| {statistics.median(r['p99_ms'] for r in mine):.2f} "
                f"| {statistics.median(r['replicas'] for r in mine):.3f} "
                f"| {statistics.median(r['members'] for r in mine):.3f} |"
            )
    lines.append("")

    def rates(label: str, scenario: str) -> list[float]:
        return [r["rate"] for r in runs if r["label"] == label and r["scenario"] == scenario]

    for label in labels:
        against = [
            s / h for s, h in zip(rates(label, "spread"), rates(label, "health"), strict=True)
        ]
        lines.append(
            f"- {label}: spread ÷ its /health per round "
            f"{', '.join(f'{x:.2f}' for x in against)} (median {statistics.median(against):.2f})"
        )
    first, second = labels
    paired = [b / a for a, b in zip(rates(first, "spread"), rates(second, "spread"), strict=True)]
    lines.append(
        f"- {second} ÷ {first}, spread rate per round: {', '.join(f'{x:.2f}' for x in paired)} "
        f"(median {statistics.median(paired):.2f})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkouts", nargs="*", type=Path, help="before and after")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--strategy", choices=("entry_processor", "cas", "lock"), default="entry_processor"
    )
    args = parser.parse_args()
    if len(args.checkouts) != 2:
        parser.error("give two checkouts: before and after")
    labels = ["before", "after"]
    sides = [
        Side(label, checkout, BASE_PORT + 100 * i, args)
        for i, (label, checkout) in enumerate(zip(labels, args.checkouts, strict=True))
    ]
    runs: list[dict[str, Any]] = []
    try:
        for side in sides:
            if side.read_line().strip() != "ready":
                raise RuntimeError(f"side {side.label} did not start; see {side.log_path}")
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else sides[::-1]
            for scenario in SCENARIOS:
                for side in order:
                    figures = side.run(scenario)
                    runs.append({"label": side.label, "round": round_, **figures})
                    print(
                        f"round {round_ + 1}/{args.rounds} {side.label:6} {scenario:6} "
                        f"{figures['rate']:8.0f}/s replicas {figures['replicas']:.3f} ms "
                        f"members {figures['members']:.3f} ms",
                        flush=True,
                    )
    finally:
        for side in sides:
            side.close()
    text = (
        f"Paired: {args.checkouts[0]} (before) and {args.checkouts[1]} (after), "
        f"{args.rounds} rounds, wrk {args.connections} connections, {args.seconds} s per run, "
        f"spread over {args.clients} clients, {args.strategy}\n\n" + report(labels, runs)
    )
    # Imported here, not at the top: a side process loads this file inside a checkout
    # that may predate benchmarks.stack.
    from benchmarks.stack import RESULTS

    out = RESULTS / f"paired-{time.strftime('%Y%m%dT%H%M%S')}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
