"""The scale section: a million active windows in the entry processor's shards.

On the benchmark's members (no replicas, no registry), in process, with the layout for
a cluster that grows: :data:`SCALE_SHARDS` shard entries, a call per shard entry
(``RATELIMIT_COUNTER_SHARDS`` in the environment chooses another count):

1. opens ``--scale-keys`` windows (one admitted decision per client, far under its
   limit), and measures their bytes per window per copy from the members' exporters: the
   heap in use after a full collection (``jvm_memory_used_bytes`` after ``jcmd GC.run``),
   summed over the members, after a tenth of the windows and after all of them, halved
   (backup count 1); and the windows each member reports holding
   (``ratelimit_member_windows``, owned and backup);
2. decides for ``--scale-seconds`` spread over the first 1,000 of those clients, then over
   all of them, ``--scale-rounds`` times interleaved, each run reading every member
   thread's CPU and the sweep's time (``ratelimit_member_sweep_seconds_total``): the
   ratio of the two rates (the issue asks for at least 0.9), and the sweep's share of the
   partition threads' time at the full count;
3. projects the capacity of 3, 6 and 12 members from those per-thread figures: decisions
   per partition-thread second, times the partition threads in all, times how evenly the
   shards spread the work (the mean thread's share over the busiest one's), drawn in
   ``scale_capacity.png``. It is the bound of the members' partition threads only, with
   the partition threads per member of this machine, not a measured cluster.

Why in process: a million clients through the HTTP path would measure the registry and
the replicas; the question here is what the windows cost on the members.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from api.settings import Settings
from benchmarks.stats import load_now
from benchmarks.tools.cpu import ThreadTime, thread_times
from benchmarks.tools.memory import client_id, heap_after_collection, member_metrics
from benchmarks.tools.profile import java_thread_names
from benchmarks.tools.spread import partition_shares
from limiter import connect, create_strategy
from stack import Stack, poll_until

__all__ = ["capacity_plot", "markdown", "run"]

#: The limit of every client: far above what a run decides for it.
LIMIT = 10**9
WINDOW_SECONDS = 3600
PROJECTED_MEMBERS = (3, 6, 12)

#: Shard entries of the measured layout: Hazelcast's default partition count, the layout
#: for millions of keys on a cluster that grows (the default, one entry, holds them too,
#: on one partition thread).
SCALE_SHARDS = 271


def exporter_sum(stack: Stack, metric: str, labels: str = "") -> float:
    """``metric{labels}`` summed over every member's exporter (0 when none publishes it)."""
    total = 0.0
    prefix = f"{metric}{{{labels}}} " if labels else f"{metric} "
    for index in range(stack.members):
        for line in member_metrics(stack, index).splitlines():
            if line.startswith(prefix):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def _open(limiter: Any, run_id: str, first: int, last: int, tasks: int) -> None:
    pending = iter(range(first, last))

    async def worker() -> None:
        for i in pending:
            decision = await limiter.decide(client_id(run_id, i), LIMIT, WINDOW_SECONDS)
            if not decision.allowed:
                raise RuntimeError(f"client {i} was denied its first request: {decision}")

    await asyncio.gather(*(worker() for _ in range(tasks)))


async def _rate(limiter: Any, run_id: str, keys: int, tasks: int, seconds: float) -> int:
    """Decisions made in ``seconds``, each for a client drawn at random among ``keys``."""
    stop = time.monotonic() + seconds
    made = 0
    denied: list[int] = []

    async def worker(seed: int) -> None:
        nonlocal made
        draw = random.Random(seed)
        while time.monotonic() < stop:
            i = draw.randrange(keys)
            decision = await limiter.decide(client_id(run_id, i), LIMIT, WINDOW_SECONDS)
            made += 1
            if not decision.allowed:
                denied.append(i)

    await asyncio.gather(*(worker(seed) for seed in range(tasks)))
    if denied:
        raise RuntimeError(f"{len(denied)} decisions far under the limit were denied")
    return made


def _threads(stack: Stack) -> dict[int, dict[int, ThreadTime]]:
    return {
        i: thread_times([stack.pid_of(stack.member_name(i)) or 0]) for i in range(stack.members)
    }


async def _measured(
    stack: Stack, limiter: Any, run_id: str, keys: int, options: Mapping[str, Any]
) -> dict[str, Any]:
    """One timed run over ``keys`` clients, with every member thread's CPU and the sweep's
    time read around it (between runs: the reads block the loop, no decision is waiting)."""
    sweep_before = exporter_sum(stack, "ratelimit_member_sweep_seconds_total")
    before = _threads(stack)
    started = time.monotonic()
    made = await _rate(limiter, run_id, keys, int(options["tasks"]), float(options["seconds"]))
    elapsed = time.monotonic() - started
    after = _threads(stack)
    sweep = exporter_sum(stack, "ratelimit_member_sweep_seconds_total") - sweep_before
    names = {i: java_thread_names(stack.pid_of(stack.member_name(i)) or 0) for i in after}
    shares = partition_shares(before, after, names)
    partition_seconds = sum(seconds for _, seconds, _ in shares)
    return {
        "keys": keys,
        "decisions": made,
        "per_second": made / elapsed,
        "partition_thread_seconds": partition_seconds,
        "partition_threads": len(shares),
        "busiest_share": shares[0][2] if shares else 0.0,
        "sweep_seconds": sweep,
        "sweep_share": sweep / partition_seconds if partition_seconds else 0.0,
        "load_average": load_now(),
    }


def run(
    stack: Stack, options: Mapping[str, Any], progress: Callable[[str], None]
) -> dict[str, Any]:
    """The section on a started cluster of ``stack``; ``options``: ``keys``, ``small_keys``,
    ``tasks``, ``seconds``, ``rounds``."""
    return asyncio.run(_run(stack, options, progress))


async def _run(
    stack: Stack, options: Mapping[str, Any], progress: Callable[[str], None]
) -> dict[str, Any]:
    settings = Settings.from_env(
        hazelcast_members=",".join(stack.member_addresses(stack.members)),
        hazelcast_cluster_name=stack.cluster_name,
        decision_timeout_seconds=30.0,
        lock_wait_seconds=25.0,
        lock_lease_seconds=40.0,
        expiry_grace_seconds=31.0,
        counters_map=f"ratelimit.counters.scale-{uuid.uuid4().hex[:6]}",
        counter_shards=int(os.environ.get("RATELIMIT_COUNTER_SHARDS", SCALE_SHARDS)),
    )
    keys, tasks = int(options["keys"]), int(options["tasks"])
    run_id = uuid.uuid4().hex[:8]
    link = await connect(settings)
    try:
        counters = await link.get_map(settings.counters_map)
        limiter = create_strategy(settings, counters, name="entry_processor")
        first = keys // 10
        started = time.monotonic()
        await _open(limiter, run_id, 0, first, tasks)
        heap_before = heap_after_collection(stack)
        await _open(limiter, run_id, first, keys, tasks)
        opened_in = time.monotonic() - started
        heap_after = heap_after_collection(stack)
        progress(f"scale: {keys} windows opened in {opened_in:.0f}s")

        def reported() -> bool:
            return exporter_sum(stack, "ratelimit_member_windows", 'role="owned"') >= keys

        await asyncio.to_thread(poll_until, reported, 60, f"the members to report {keys} windows")
        owned = exporter_sum(stack, "ratelimit_member_windows", 'role="owned"')
        backup = exporter_sum(stack, "ratelimit_member_windows", 'role="backup"')
        runs: dict[str, list[dict[str, Any]]] = {"small": [], "all": []}
        for _ in range(int(options["rounds"])):
            for label, n in (("small", int(options["small_keys"])), ("all", keys)):
                row = await _measured(stack, limiter, run_id, n, options)
                runs[label].append(row)
                progress(
                    f"scale: {n} keys: {row['per_second']:.0f} decisions/s, busiest partition "
                    f"thread {row['busiest_share']:.2f}, sweep {row['sweep_share']:.4f} of "
                    f"partition-thread time, load {row['load_average']:.2f}"
                )
        await limiter.close()
    finally:
        await link.close()
    return summarise(
        keys, heap_before, heap_after, owned, backup, opened_in, runs, settings.counter_shards
    )


def summarise(
    keys: int,
    heap_before: float,
    heap_after: float,
    owned: float,
    backup: float,
    opened_in: float,
    runs: Mapping[str, list[dict[str, Any]]],
    shards: int,
) -> dict[str, Any]:
    """The section's figures, and the projection of 3, 6 and 12 members."""
    measured = keys - keys // 10
    full = runs["all"]
    small_rate = statistics.median(r["per_second"] for r in runs["small"])
    full_rate = statistics.median(r["per_second"] for r in full)
    decisions = sum(r["decisions"] for r in full)
    thread_seconds = sum(r["partition_thread_seconds"] for r in full)
    threads = max(r["partition_threads"] for r in full)
    per_member = threads / 3
    per_thread = decisions / thread_seconds if thread_seconds else 0.0
    busiest = statistics.median(r["busiest_share"] for r in full)
    evenness = 1 / (threads * busiest) if threads and busiest else 0.0
    return {
        "keys": keys,
        "shards": shards,
        "opened_in_seconds": opened_in,
        "heap_before": heap_before,
        "heap_after": heap_after,
        "bytes_per_window_per_copy": (heap_after - heap_before) / measured / 2,
        "windows_owned": owned,
        "windows_backup": backup,
        "per_second_small": small_rate,
        "per_second_all": full_rate,
        "ratio_all_to_small": full_rate / small_rate if small_rate else 0.0,
        "sweep_share": statistics.median(r["sweep_share"] for r in full),
        "decisions_per_partition_thread_second": per_thread,
        "partition_threads_per_member": per_member,
        "evenness": evenness,
        "projected": {str(m): per_thread * m * per_member * evenness for m in PROJECTED_MEMBERS},
        "load_average": max(r["load_average"] for rs in runs.values() for r in rs),
        "runs": dict(runs),
    }


def markdown(section: Mapping[str, Any] | None) -> list[str]:
    """The report's lines for the section (none when it was not run)."""
    if not section:
        return []
    small = section["runs"]["small"][0]["keys"] if section["runs"]["small"] else 0
    lines = [
        f"## Scale: {section['keys']:,} active windows ({section['shards']} shard entries)",
        "",
        f"- bytes per window per copy: **{section['bytes_per_window_per_copy']:.0f}** "
        f"(members' heap after a full collection, between a tenth and all of the windows); "
        f"windows reported by the members: {section['windows_owned']:,.0f} owned, "
        f"{section['windows_backup']:,.0f} backup; opened in {section['opened_in_seconds']:.0f} s",
        f"- decisions/s over {section['keys']:,} keys: {section['per_second_all']:.0f}, over "
        f"{small:,} keys: {section['per_second_small']:.0f}; ratio "
        f"**{section['ratio_all_to_small']:.2f}** (median of {len(section['runs']['all'])})",
        f"- the sweep's share of partition-thread time at {section['keys']:,} keys: "
        f"**{section['sweep_share']:.4f}**",
        f"- decisions per partition-thread second: "
        f"{section['decisions_per_partition_thread_second']:.0f}; spread evenness "
        f"{section['evenness']:.2f}; projected partition-thread capacity: "
        + ", ".join(f"{m} members {v:,.0f}/s" for m, v in section["projected"].items()),
        f"- highest load average during the section: {section['load_average']:.2f}",
        "",
    ]
    return lines


def capacity_plot(section: Mapping[str, Any] | None, folder: Path) -> Path | None:
    """``scale_capacity.png``: the projected capacity of 3, 6 and 12 members."""
    if not section:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members = [int(m) for m in section["projected"]]
    values = list(section["projected"].values())
    figure, axis = plt.subplots(figsize=(4.2, 3.0), dpi=72)
    axis.bar([str(m) for m in members], values, color="tab:green")
    axis.set_xlabel("members")
    axis.set_ylabel("decisions/s (partition threads)")
    axis.set_title(
        f"Projected capacity, {section['partition_threads_per_member']:.0f} partition "
        "threads per member",
        fontsize=9,
    )
    figure.tight_layout()
    path = folder / "scale_capacity.png"
    figure.savefig(path, dpi=72)
    plt.close(figure)
    return path
