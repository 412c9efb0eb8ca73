"""Every strategy side by side, in one run on one stack, into one report.

    python -m benchmarks [--smoke] [--out DIR] [--only SECTION ...]

``--only`` picks sections (all by default): inprocess, scale, endtoend, k6, policies, rls,
failover. ``--out`` defaults to ``docs/benchmarks/`` (``.run/bench-smoke/`` with ``--smoke``).

Starts the benchmark stack (3 Hazelcast members, then nginx and 3 replicas per strategy;
ports from RATELIMIT_BENCH_BASE_PORT, see :func:`benchmarks.stack.bench_stack`),
measures, stops everything it started (also on failure or Ctrl-C) and writes
``report.json``, ``report.md`` and PNG plots into ``--out``:

1. in process (:mod:`benchmarks.inprocess`): the ``IMap.get`` and ``IMap.set(ttl)`` floors and
   each strategy at each concurrency, for one hot key and for each ``--keys``;
2. end to end (:mod:`benchmarks.endtoend.rounds`, wrk through nginx): per strategy ``/health``,
   one client under its limit, one past it, one flooded with an exact limit, and
   ``--clients`` clients;
3. k6 (:mod:`benchmarks.rate_steps`): per strategy, constant-arrival-rate steps, and the
   highest rate held with p99 under 100 ms and exact admissions; and once, on
   ``entry_processor`` (the default strategy), the original's scenario made exact
   (:mod:`benchmarks.load.k6`);
4. policies (:mod:`benchmarks.policies`): what a client of three limits costs against one
   of one limit, per strategy in process and, on the replicas of the end-to-end part,
   through nginx (the cost ratio of their rates); ``python -m benchmarks.policies`` runs
   it alone;
5. rls (:mod:`benchmarks.rls`): the gRPC rate limit service per replica against
   ``GET /decide``, Envoy's rate limit filter on our replicas against the same Envoy
   without it, and the peer, envoyproxy/ratelimit, behind the same Envoy with the same
   rules (throughput, and a flood's admissions against its exact limit), on replicas
   restarted with the service's rules after the other parts; ``python -m benchmarks.rls``
   runs it alone;
6. failover (:mod:`benchmarks.failover`), last because it kills a member: a flood through
   nginx while the owner of most shard entries is SIGKILLed and a new member started, with
   a million windows opened before; whether any count was lost or doubled, the slowest
   answer, and how long the cluster took to be whole again.

A run that starts on a busy machine (1-minute load average above the core count) is
measured all the same but marked BUSY MACHINE on stdout and on top of the report: its
figures understate the service. Each k6 step records the load average at its end, and
the steps start after an unrecorded warm-up at the first step's rate.

Every run is checked for exactness; one that admits more than expected marks the report
FAILED and the exit code 1. ``--smoke`` shrinks every size and duration to a run of
about a minute that only proves the tool works (``make test`` runs it); its figures mean
nothing. Every load targets 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import failover as failover_part
from benchmarks import rate_steps
from benchmarks import scale as scale_part
from benchmarks.clients import create_client
from benchmarks.endtoend import rounds as frontdoor
from benchmarks.inprocess import FLOORS, GridOptions, run_grid
from benchmarks.load.k6 import clients as k6_clients
from benchmarks.load.k6 import run_scenario as run_original
from benchmarks.load.wrk import run_wrk
from benchmarks.options import HTTP_SECTIONS, ORIGINAL_ON, parse
from benchmarks.policies import suite as policies_part
from benchmarks.report import busy_note, failed, headline, load_average, machine, write_report
from benchmarks.results import EndToEndRow, K6Steps, Options, Report
from benchmarks.rls.rules import replica_env as rls_replica_env
from benchmarks.rls.suite import run_rls
from benchmarks.stack import ADMIN, ADMIN_TOKEN, REPLICAS, bench_stack

__all__ = ["main"]


class Run:
    """One benchmark run: its stack, its progress display and what it found."""

    def __init__(self, args: argparse.Namespace, argv: Sequence[str]) -> None:
        self.args = args
        self.stack = bench_stack()
        self.base = f"http://127.0.0.1:{self.stack.nginx_port}"
        self.console = Console(stderr=True)
        #: The strategy and counters map of the replicas running now, if any.
        self.replicas: tuple[str, str] | None = None
        options = {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "prog"
        }
        self.report: Report = {
            "command": " ".join([args.prog, *argv]),
            "options": cast(Options, options),
            "machine": machine(),
            "stack": {
                "members": self.stack.member_addresses(3),
                "nginx": self.base,
                "replicas": REPLICAS,
            },
        }

    def log(self, line: str) -> None:
        self.console.log(line, highlight=False)

    def stepper(self, progress: Progress, task: Any) -> Callable[[str], None]:
        """What a section calls after each step: the line logged, its task advanced."""

        def step(line: str) -> None:
            self.log(line)
            progress.advance(task)

        return step

    def main(self) -> Report:
        args = self.args
        started = time.time()
        if busy_note(self.report):
            self.log(busy_note(self.report))
        self.report["started"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        columns = (
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            tasks = {}
            spreads = 1 + len(args.keys)
            contenders = len(FLOORS) + len(args.strategies)
            if "inprocess" in args.only:
                runs = spreads * contenders * (len(args.concurrency) * args.rounds + 1)
                tasks["inprocess"] = progress.add_task("in process", total=runs)
            if "scale" in args.only:
                tasks["scale"] = progress.add_task("scale", total=2 * args.scale_rounds + 1)
            if "endtoend" in args.only:
                runs = len(args.http_strategies) * args.e2e_rounds * len(frontdoor.SCENARIOS)
                tasks["endtoend"] = progress.add_task("end to end", total=runs)
            if "k6" in args.only:
                runs = len(args.http_strategies) + (1 if self.runs_original() else 0)
                tasks["k6"] = progress.add_task("k6", total=runs)
            if "policies" in args.only:
                runs = len(args.strategies) * 2 * (args.policy_rounds + 1)
                runs += len(args.http_strategies) * 3 * (args.policy_rounds + 1)
                tasks["policies"] = progress.add_task("policies", total=runs)
            if "rls" in args.only:
                tasks["rls"] = progress.add_task("rls", total=None)
            if "failover" in args.only:
                tasks["failover"] = progress.add_task("failover", total=3)
            try:
                progress.update(tasks[args.only[0]], description="members…")
                self.stack.start_cluster(3)
                progress.update(tasks[args.only[0]], description=self._label(args.only[0]))
                if "inprocess" in args.only:
                    self.inprocess(progress, tasks["inprocess"])
                if "scale" in args.only:
                    self.scale(progress, tasks["scale"])
                if "policies" in args.only:
                    self.policies_inprocess(progress, tasks["policies"])
                if set(HTTP_SECTIONS) & set(args.only):
                    self.over_http(progress, tasks)
                if "rls" in args.only:
                    self.rls(progress, tasks["rls"])
                # Last: it kills a member (and starts a new one in its place).
                if "failover" in args.only:
                    self.failover(progress, tasks["failover"])
            finally:
                self.stack.stop()
        finished = time.time()
        self.report["machine"]["load_average_at_end"] = load_average()
        self.report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(finished))
        self.report["elapsed_seconds"] = finished - started
        return self.report

    @staticmethod
    def _label(section: str) -> str:
        return {
            "inprocess": "in process",
            "endtoend": "end to end",
            "k6": "k6",
            "policies": "policies",
            "scale": "scale",
            "rls": "rls",
            "failover": "failover",
        }[section]

    def runs_original(self) -> bool:
        return bool(self.args.original) and ORIGINAL_ON in self.args.http_strategies

    def inprocess(self, progress: Progress, task: Any) -> None:
        args = self.args
        options = GridOptions(
            members=self.stack.member_addresses(3),
            cluster_name=self.stack.cluster_name,
            strategies=args.strategies,
            concurrency=args.concurrency,
            keys=args.keys,
            seconds=args.seconds,
            rounds=args.rounds,
        )
        step = self.stepper(progress, task)
        self.report["inprocess"] = asyncio.run(run_grid(options, step))

    def scale(self, progress: Progress, task: Any) -> None:
        """A million windows in process (:mod:`benchmarks.scale`)."""
        args = self.args
        step = self.stepper(progress, task)
        options = {
            "keys": args.scale_keys,
            "small_keys": args.scale_small_keys,
            "tasks": args.scale_tasks,
            "seconds": args.scale_seconds,
            "rounds": args.scale_rounds,
        }
        self.report["scale"] = scale_part.run(self.stack, options, step)

    def policies_inprocess(self, progress: Progress, task: Any) -> None:
        """The policies part in process; its end-to-end rounds run in :meth:`over_http`."""
        step = self.stepper(progress, task)
        self.report["policies"] = policies_part.inprocess(self.stack, self.args, step)

    def rls(self, progress: Progress, task: Any) -> None:
        """The rate limit part: on the HTTP parts' replicas when they run the default
        strategy (a smoke run's do), else on replicas restarted for it; Envoy, the peer."""
        step = self.stepper(progress, task)
        self.report["rls"] = run_rls(self.stack, self.args, step, self.replicas)

    def failover(self, progress: Progress, task: Any) -> None:
        """A member killed and a new one started under a flood (:mod:`benchmarks.failover`)."""
        args = self.args
        step = self.stepper(progress, task)
        options = {
            "windows": args.failover_windows,
            "clients": args.failover_clients,
            "connections": args.failover_connections,
            "calm_seconds": args.failover_calm_seconds,
        }
        self.report["failover"] = failover_part.run(self.stack, options, step, self.replicas)
        self.replicas = None

    def over_http(self, progress: Progress, tasks: dict[str, Any]) -> None:
        """Per strategy: replicas restarted with it, then wrk's rounds, then k6's steps
        (and the original scenario on the default strategy), on those same replicas."""
        args = self.args
        stack = self.stack
        stack.start_parts([stack.demo_app_part(), stack.nginx_part(REPLICAS)])
        e2e: dict[str, dict[str, EndToEndRow]] = {}
        steps: dict[str, K6Steps] = {}
        self.report["endtoend"] = e2e if "endtoend" in args.only else None
        self.report["k6_steps"] = steps if "k6" in args.only else None
        for strategy in args.http_strategies:
            stack.stop([stack.replica_name(i) for i in range(REPLICAS)])
            counters_map = f"ratelimit.counters.bench-{strategy}"
            stack.start_replicas(
                REPLICAS,
                {
                    "RATELIMIT_STRATEGY": strategy,
                    "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
                    "RATELIMIT_COUNTERS_MAP": counters_map,
                    "RATELIMIT_DEFAULT_WINDOW_ALIGNMENT": "first_request",
                    **(rls_replica_env(stack, args.rls_config) if "rls" in args.only else {}),
                },
            )
            self.replicas = (strategy, counters_map)
            # Warm-up, not recorded: connections, the members' JIT, near caches.
            warm = create_client(self.base, 10**9)
            run_wrk(
                f"{self.base}/example",
                args.connections,
                1 if args.smoke else 2,
                headers={"X-Api-Id": warm},
            )
            if "endtoend" in args.only:
                options = frontdoor.FrontDoorOptions(
                    connections=args.connections,
                    duration=args.duration,
                    rounds=args.e2e_rounds,
                    exact_limit=args.exact_limit,
                    clients=args.clients,
                )
                rounds = []
                for round_ in range(args.e2e_rounds):

                    def seen(
                        scenario: str, r: dict[str, Any], n: int = round_, s: str = strategy
                    ) -> None:
                        mark = " FAILED " + "; ".join(r["problems"]) if r["problems"] else ""
                        self.log(
                            f"{s} round {n + 1} {scenario}: {r['per_second']:.0f}/s "
                            f"p99 {r['p99_ms']:.2f} ms {r['statuses']}{mark}"
                        )
                        progress.advance(tasks["endtoend"])

                    rounds.append(frontdoor.run_round(self.base, options, seen))
                e2e[strategy] = frontdoor.summarise(rounds)
            if "k6" in args.only:
                result = rate_steps.run_steps(
                    self.base,
                    args.steps,
                    args.step_seconds,
                    args.step_clients,
                    stack.run_dir / "k6" / strategy,
                    args.max_vus,
                )
                steps[strategy] = result
                for s in result["steps"]:
                    self.log(
                        f"{strategy} k6 {s['rate']}/s: sent {s['per_second']:.0f}/s, "
                        f"p99 {s['p99_ms']:.1f} ms, dropped {s['dropped']}, admitted "
                        f"{s['admitted']}/{s['expected']}: {'held' if s['held'] else 'not held'}"
                    )
                progress.advance(tasks["k6"])
                if strategy == ORIGINAL_ON and self.runs_original():
                    self.original()
                    progress.advance(tasks["k6"])
            if "policies" in args.only:
                policy_step = self.stepper(progress, tasks["policies"])
                policies_part.endtoend(
                    self.stack, self.args, self.report, (strategy, counters_map), policy_step
                )

    def original(self) -> None:
        """The original's scenario made exact (up to ~110 s: it waits for a minute edge)."""
        self.log("k6 original scenario: up to 110 s …")
        export = self.stack.run_dir / "k6" / "original-summary.json"
        export.parent.mkdir(parents=True, exist_ok=True)
        with k6_clients(self.base, ADMIN) as ids:
            run = run_original(self.base, ids, export)
        self.report["k6_original"] = {
            "strategy": ORIGINAL_ON,
            "exit_code": run.exit_code,
            "figures": run.figures(),
            "thresholds": run.thresholds(),
        }
        self.log(f"k6 original scenario: exit {run.exit_code}\n{run.figures()}")


def main(argv: Sequence[str] | None = None, **defaults: Any) -> int:
    """The suite, or the part of it ``defaults`` (:func:`parse`'s) choose."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv, **defaults)
    run = Run(args, argv)
    report = run.main()
    paths = write_report(report, args.out)
    problems = failed(report)
    if busy_note(report):
        print(busy_note(report) + "\n")
    print(headline(report))
    print("\n".join(["", "written:", *(f"  {p}" for p in paths)]))
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
