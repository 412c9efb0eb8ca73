"""Where a decision's CPU goes: py-spy on a replica worker and Java Flight Recorder on
every member, while wrk spreads requests over many clients far under their limits.

Starts the benchmark's own stack (``RATELIMIT_BENCH_BASE_PORT``, as
:mod:`benchmarks.endtoend`), creates the clients, warms up, then records for
``--seconds`` and writes to ``benchmarks/results/profile-<strategy>-<time>/``:

- ``replica.speedscope.json``: the worker's stacks, for https://www.speedscope.app;
- ``replica.collapsed.txt``: the same as collapsed stacks (flamegraph.pl input);
- ``member-N.jfr``: each member's recording (``jfr print``, JDK Mission Control);
- ``summary.md``: the top functions of both sides, by own time and by inclusive time,
  and every thread's user and kernel CPU and context switches per decision, grouped by
  what the thread does (from ``/proc``; a member's thread names from ``jcmd Thread.print``).
  The sampling profilers see only Java or Python code; this table also shows the
  system calls and thread wake-ups around each message.

    python -m benchmarks.tools.profile [--strategy entry_processor] [--clients 1000] [--seconds 20]

Needs py-spy (``pip install -e '.[profile]'``) and, for an attach to a process of
another user, root (not needed here: the stack's processes are the caller's).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.clients import create_client, create_clients
from benchmarks.load.wrk import WrkRun, run_wrk
from benchmarks.stack import ADMIN_TOKEN, REPLICAS, RESULTS, bench_stack
from benchmarks.tools.cpu import (
    CpuMeter,
    ThreadTime,
    children_by_parent,
    thread_times,
    tree_cpu_seconds,
)
from stack import Stack

#: Frames of the JDK's and Hazelcast's idle waits, left out of the member's top lists.
JAVA_IDLE = re.compile(r"park|epollWait|Object\.wait|Thread\.sleep|LockSupport|select0")
#: A thread line of ``jcmd Thread.print``: its name and native id (hex on JDK 17).
JAVA_THREAD = re.compile(r'^"(?P<name>[^"]*)".*\bnid=(?P<nid>0x[0-9a-fA-F]+|\d+)', re.MULTILINE)
#: Hazelcast prefixes its threads with the instance's name (``hz.<name>.``).
HAZELCAST_INSTANCE = re.compile(r"^hz\.[^.]+\.")


def java_thread_names(pid: int) -> dict[int, str]:
    """Thread id -> the JVM's name for it (the kernel keeps only 15 characters)."""
    dump = subprocess.run(
        ["jcmd", str(pid), "Thread.print"], check=False, capture_output=True, text=True
    ).stdout
    return {int(m["nid"], 0): m["name"] for m in JAVA_THREAD.finditer(dump)}


def thread_group(name: str) -> str:
    """One row per kind of thread: the instance prefix dropped, numbers as N."""
    return re.sub(r"(?<=[-#])\d+|\d+$", "N", HAZELCAST_INSTANCE.sub("", name))


def thread_table(
    side: str,
    before: Mapping[int, ThreadTime],
    after: Mapping[int, ThreadTime],
    names: Mapping[int, str],
    decisions: int,
) -> list[str]:
    """Rows of user and kernel CPU (ms) and switches per decision, by thread group, the
    sum of all groups first."""
    groups: dict[str, ThreadTime] = {}
    total = ThreadTime("all", 0.0, 0.0, 0, 0)
    for tid, now in after.items():
        group = thread_group(names.get(tid, now.name))
        used = now.minus(before.get(tid))
        groups[group] = groups.get(group, ThreadTime(group, 0.0, 0.0, 0, 0)).plus(used, group)
        total = total.plus(used, "all")
    per = max(decisions, 1)
    return [
        f"| {side} | {row.name} | {1000 * row.user_seconds / per:.3f} | "
        f"{1000 * row.system_seconds / per:.3f} | {row.voluntary_switches / per:.2f} | "
        f"{row.involuntary_switches / per:.2f} |"
        for row in sorted(
            [total, *groups.values()], key=lambda r: -(r.user_seconds + r.system_seconds)
        )
        if row.user_seconds + row.system_seconds + row.voluntary_switches > 0
    ]


def top(counter: Mapping[str, int], total: int, count: int = 25) -> list[str]:
    return [
        f"| {100 * n / max(total, 1):5.1f}% | `{name}` |"
        for name, n in sorted(counter.items(), key=lambda item: -item[1])[:count]
    ]


def summarise_collapsed(lines: Iterable[str]) -> tuple[int, dict[str, int], dict[str, int]]:
    """Samples, own time and inclusive time per frame, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own, inclusive


def summarise_jfr(recording: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """Execution samples of one recording: own and inclusive counts per method."""
    printed = subprocess.run(
        ["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64", str(recording)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for event in printed.split("jdk.ExecutionSample")[1:]:
        frames = re.findall(r"^\s+([\w.$<>]+)\(", event, re.MULTILINE)
        if not frames or JAVA_IDLE.search(frames[0]):
            continue
        total += 1
        own[frames[0]] += 1
        for frame in set(frames):
            inclusive[frame] += 1
    return total, own, inclusive


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strategy", default="entry_processor")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--warmup", type=int, default=15, help="seconds of the spread load before recording"
    )
    return parser.parse_args()


def start_and_warm(stack: Stack, args: argparse.Namespace, base: str) -> list[str]:
    """The stack up with the strategy, its clients created and warmed; their ids."""
    stack.start_cluster(3)
    env = {
        "RATELIMIT_STRATEGY": args.strategy,
        "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
        "RATELIMIT_COUNTERS_MAP": f"ratelimit.counters.profile-{args.strategy}",
    }
    stack.start_replicas(REPLICAS, env)
    stack.start_parts([stack.demo_app_part(), stack.nginx_part(REPLICAS)])
    ids = asyncio.run(create_clients(base, args.clients, 10**9))
    warm = create_client(base, 10**9)
    run_wrk(f"{base}/example", args.connections, 3, headers={"X-Api-Id": warm})
    # Long enough for the members' JIT to compile the spread's paths: a shorter
    # warm-up left the compiler threads with a quarter of the members' CPU.
    run_wrk(f"{base}/example", args.connections, args.warmup, rotate=("X-Api-Id", ids))
    return ids


def busiest_worker(stack: Stack) -> int:
    """Replica 1's busiest child after the warm-up: a worker (Sanic also forks helpers)."""
    replica_pid = stack.pid_of(stack.replica_name(0)) or 0
    workers = sorted(
        children_by_parent().get(replica_pid, []), key=lambda pid: -tree_cpu_seconds([pid])
    )
    if not workers:
        raise RuntimeError("replica-1 has no worker process")
    return workers[0]


def start_jfr(members: Mapping[int, int], seconds: int, out: Path) -> None:
    """A Flight Recording on every member, a little longer than the load."""
    for index, pid in members.items():
        subprocess.run(
            [
                "jcmd",
                str(pid),
                "JFR.start",
                "name=decisions",
                "settings=profile",
                f"duration={seconds + 5}s",
                f"filename={out / f'member-{index + 1}.jfr'}",
            ],
            check=True,
            capture_output=True,
        )


def stop_jfr(members: Mapping[int, int]) -> None:
    for pid in members.values():
        subprocess.run(
            ["jcmd", str(pid), "JFR.stop", "name=decisions"], check=False, capture_output=True
        )


def start_py_spy(py_spy: str, worker: int, args: argparse.Namespace, out: Path) -> list[Any]:
    """py-spy on the worker, once per output format (speedscope, and collapsed stacks)."""
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(worker),
                "--duration",
                str(args.seconds),
                "--rate",
                str(args.rate),
                "--nonblocking",
                "--format",
                fmt,
                "--output",
                str(out / name),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(out / f"py-spy-{fmt}.log").open("w"),
        )
        for fmt, name in (
            ("speedscope", "replica.speedscope.json"),
            ("raw", "replica.collapsed.txt"),
        )
    ]


@dataclasses.dataclass
class Recorded:
    """What the recorded load left besides the files: its rate, CPU and threads."""

    seen: WrkRun
    cpu: dict[str, float]
    threads_before: dict[str, Any]
    threads_after: dict[str, Any]
    java_names: dict[int, str]


def record(
    stack: Stack, args: argparse.Namespace, base: str, ids: list[str], py_spy: str, out: Path
) -> Recorded:
    """The recorded load: py-spy on a replica worker, JFR on every member, wrk over the
    clients, and every thread's CPU read around it."""
    worker = busiest_worker(stack)
    (out / "replica-worker.txt").write_text(
        Path(f"/proc/{worker}/cmdline").read_text().replace("\0", " ") + "\n"
    )
    members = {i: stack.pid_of(stack.member_name(i)) or 0 for i in range(3)}
    start_jfr(members, args.seconds, out)
    spies = start_py_spy(py_spy, worker, args, out)
    replica_pids = [stack.pid_of(stack.replica_name(i)) or 0 for i in range(REPLICAS)]
    meter = CpuMeter({"replicas": list(replica_pids), "members": list(members.values())})
    threads_before = {
        "members": thread_times(members.values()),
        "replicas": thread_times(replica_pids),
    }
    before = meter.read()
    seen = run_wrk(f"{base}/example", args.connections, args.seconds, rotate=("X-Api-Id", ids))
    cpu = meter.since(before).per_request_ms(seen.requests)
    threads_after = {
        "members": thread_times(members.values()),
        "replicas": thread_times(replica_pids),
    }
    java_names: dict[int, str] = {}
    for pid in members.values():
        java_names.update(java_thread_names(pid))
    for spy in spies:
        spy.wait(timeout=args.seconds + 60)
    stop_jfr(members)
    return Recorded(seen, cpu, threads_before, threads_after, java_names)


def profile_section(
    title: str, column: str, summary: tuple[int, dict[str, int], dict[str, int]]
) -> list[str]:
    """One profile's top frames, own and inclusive."""
    total, own, inclusive = summary
    return [
        title.format(total=total),
        "",
        "### Own time",
        "",
        f"| share | {column} |",
        "|---:|---|",
        *top(own, total),
        "",
        "### Inclusive",
        "",
        f"| share | {column} |",
        "|---:|---|",
        *top(inclusive, total, 40),
        "",
    ]


def summary_markdown(args: argparse.Namespace, recorded: Recorded, out: Path) -> str:
    seen, cpu = recorded.seen, recorded.cpu
    lines = [
        f"# Profile: `{args.strategy}`, {args.clients} clients, wrk {args.connections} "
        f"connections, {args.seconds} s",
        "",
        f"Command: `python -m benchmarks.tools.profile {' '.join(sys.argv[1:])}`",
        "",
        f"{seen.per_second:.0f} requests/s, statuses {seen.statuses}; CPU per request: "
        f"replicas {cpu['replicas']:.3f} ms, members {cpu['members']:.3f} ms",
        "",
        "## CPU by thread, per decision (every member, every replica process)",
        "",
        "| side | threads | user ms | kernel ms | voluntary switches | involuntary switches |",
        "|---|---|---:|---:|---:|---:|",
        *thread_table(
            "members",
            recorded.threads_before["members"],
            recorded.threads_after["members"],
            recorded.java_names,
            seen.requests,
        ),
        *thread_table(
            "replicas",
            recorded.threads_before["replicas"],
            recorded.threads_after["replicas"],
            {},
            seen.requests,
        ),
        "",
    ]
    lines += profile_section(
        "## Replica worker (py-spy, {total} samples)",
        "frame",
        summarise_collapsed((out / "replica.collapsed.txt").read_text().splitlines()),
    )
    for recording in sorted(out.glob("member-*.jfr")):
        lines += profile_section(
            f"## {recording.stem} (JFR, {{total}} busy samples)",
            "method",
            summarise_jfr(recording),
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("error: py-spy is missing: pip install -e '.[profile]'", file=sys.stderr)
        return 1
    out = RESULTS / f"profile-{args.strategy}-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True)
    stack = bench_stack()
    base = f"http://127.0.0.1:{stack.nginx_port}"
    try:
        ids = start_and_warm(stack, args, base)
        recorded = record(stack, args, base, ids, py_spy, out)
    finally:
        stack.stop()
    (out / "summary.md").write_text(summary_markdown(args, recorded, out))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
