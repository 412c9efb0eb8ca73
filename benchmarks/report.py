"""The benchmark report: one JSON file with every figure, a Markdown page that reads it
out, and PNG plots, written together into one folder (``docs/benchmarks/`` by default).

Why ratios first: on a shared 2-core machine the absolute rates move with whatever else
runs, while a contender's rate divided by a floor measured minutes apart in the same run
moves much less; every table gives both.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

from benchmarks.failover import markdown as failover_markdown
from benchmarks.failover import problems as failover_problems
from benchmarks.policies.tables import policy_problems, policy_section
from benchmarks.results import Machine, Report
from benchmarks.rls.tables import rls_problems, rls_section
from benchmarks.scale import markdown as scale_markdown
from stack import ROOT
from stack.members import HAZELCAST_JAR

__all__ = ["busy_note", "failed", "headline", "load_average", "machine", "write_report"]


def _version(argv: list[str], pattern: str = r"(\d+(?:\.\d+)+)") -> str:
    """The first version-looking string a tool prints about itself, or "missing"."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return "missing"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "missing"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else (done.stdout + done.stderr).strip()[:60]


def _hazelcast_version() -> str:
    try:
        with zipfile.ZipFile(HAZELCAST_JAR) as jar:
            manifest = jar.read("META-INF/MANIFEST.MF").decode()
    except (OSError, KeyError, zipfile.BadZipFile):
        return "unknown"
    found = re.search(r"^Bundle-Version: (\S+)", manifest, re.MULTILINE)
    return found.group(1) if found else "unknown"


def load_average() -> str:
    """The 1, 5 and 15-minute load averages: how busy the shared machine was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> Machine:
    """What the figures were measured on: they mean little without it."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    from benchmarks.load.k6 import K6Missing, k6_binary

    try:
        k6 = _version([str(k6_binary()), "version"])
    except K6Missing:
        k6 = "missing"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "memory_gib": round(int(total.group(1)) / 2**20, 1) if total else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _version(["java", "-version"], r'version "([^"]+)"'),
        "hazelcast": _hazelcast_version(),
        "hazelcast_python_client": importlib.metadata.version("hazelcast-python-client"),
        "sanic": importlib.metadata.version("sanic"),
        "nginx": _version([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "wrk": _version(["wrk", "-v"]),
        "k6": k6,
        "commit": commit,
        "load_average_at_start": load_average(),
        "busy": os.getloadavg()[0] > (os.cpu_count() or 1),
    }


def busy_note(report: Report) -> str:
    """A warning when the run started on a busy machine, else nothing."""
    m = report["machine"]
    if not m["busy"]:
        return ""
    return (
        f"BUSY MACHINE: load average {m['load_average_at_start']} at the start, above its "
        f"{m['cpus']} CPUs: every figure understates the service (each k6 step gives its "
        "own load average); measure again on a quiet machine."
    )


def failed(report: Report) -> list[str]:
    """Every exactness problem of the run, labelled; any one marks it FAILED."""
    found = []
    grid = report.get("inprocess")
    if grid:
        for spread, by_name in grid["scenarios"].items():
            for name, by_tasks in by_name.items():
                for tasks, r in by_tasks.items():
                    found += [f"in process {spread} c={tasks} {name}: {p}" for p in r["problems"]]
        for name, problems in grid["burst"]["problems"].items():
            found += [f"in process burst {name}: {p}" for p in problems]
    for strategy, rows in (report.get("endtoend") or {}).items():
        for scenario, row in rows.items():
            found += [f"end to end {strategy} {scenario}: {p}" for p in row["problems"]]
    for strategy, steps in (report.get("k6_steps") or {}).items():
        found += [f"k6 steps {strategy}: {p}" for p in steps["problems"]]
    original = report.get("k6_original")
    if original and original.get("exit_code") != 0:
        found.append(f"k6 original scenario: k6 exited {original['exit_code']}")
    return (
        found
        + policy_problems(report.get("policies"))
        + rls_problems(report.get("rls"))
        + failover_problems(report.get("failover"))
    )


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def headline(report: Report) -> str:
    """One row per strategy: the figures a reader compares first."""
    grid = report.get("inprocess")
    scenarios = grid["scenarios"] if grid else {}
    concurrency = grid["concurrency"] if grid else [0]
    top = str(64 if 64 in concurrency else max(concurrency))
    spread = next((s for s in scenarios if s != "hot key"), None)
    e2e = report.get("endtoend") or {}
    steps = report.get("k6_steps") or {}
    lines = [
        f"| strategy | in process, hot key, c={top}: /s (vs get floor) "
        f"| in process, {spread or '-'}, c={top}: /s (vs get floor) "
        "| end to end under limit: /s (vs /health) | past limit (vs /health) "
        f"| {report['options']['clients']:,} clients (vs /health) "
        "| k6: highest rate held (p99 < 100 ms, exact) "
        "| 3 limits' cost vs 1: in process / end to end | exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    policies = report.get("policies")
    sides = [policies["inprocess"], policies["endtoend"]] if policies else [None, None]
    bad = failed(report)
    for strategy in report["options"]["strategies"]:
        cells = [strategy]
        for where in ("hot key", spread):
            r = scenarios.get(where, {}).get(strategy, {}).get(top) if where else None
            cells.append(f"{r['per_second']:.0f} ({r['vs_get']:.2f})" if r else "-")
        rows = e2e.get(strategy, {})
        for scenario in ("under", "past", "clients"):
            e2e_row = rows.get(scenario)
            if e2e_row is None:
                cells.append("-")
            elif scenario == "under":
                cells.append(f"{e2e_row['per_second']:.0f} ({e2e_row['ratio_to_health']:.2f})")
            else:
                cells.append(f"{e2e_row['ratio_to_health']:.2f}")
        held = steps.get(strategy)
        cells.append(f"{held['highest_held']}/s" if held else "-")
        costs = [side["strategies"].get(strategy) if side else None for side in sides]
        cells.append(" / ".join(f"{c['cost_ratio']:.2f}" if c else "-" for c in costs))
        mine = [p for p in bad if f" {strategy}" in p or f" {strategy}:" in p]
        cells.append("FAILED" if mine else "exact")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _heading(report: Report) -> list[str]:
    """What ran, where and how busy the machine was, and the headline."""
    m = report["machine"]
    bad = failed(report)
    return [
        f"# Benchmark report{' (smoke)' if report['options']['smoke'] else ''}",
        "",
        f"**{'FAILED' if bad else 'Exact'}**: "
        + ("; ".join(bad) if bad else "no run admitted more than its exact expectation."),
        "",
        f"Run {report['started']} to {report['finished']} ({report['elapsed_seconds']:.0f} s), "
        f"commit `{m['commit']}`, with:",
        "",
        f"    {report['command']}",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}; "
        f"Python {m['python']}, Java {m['java']}, Hazelcast {m['hazelcast']} (3 members, "
        f"Python client {m['hazelcast_python_client']}), Sanic {m['sanic']}, nginx {m['nginx']}, "
        f"wrk {m['wrk']}, k6 {m['k6']}. Everything (members, replicas, nginx, load) shares "
        "those CPUs with whatever else ran (load average "
        f"{m.get('load_average_at_start', '?')} at the start, "
        f"{m.get('load_average_at_end', '?')} at the end): read the ratios, measured in "
        "the same run.",
        "",
        *([f"**{busy_note(report)}**", ""] if busy_note(report) else []),
        "## Headline",
        "",
        headline(report),
        "",
    ]


def _inprocess_section(report: Report) -> list[str]:
    """The in-process table, one row per spread, concurrency and contender."""
    grid = report.get("inprocess")
    if not grid:
        return []
    out = [
        "## In process",
        "",
        f"Each contender {grid['seconds_per_run']} s per run from N asyncio tasks of one "
        f"process, median of {grid['rounds']} interleaved rounds after a warm-up; every "
        "decision admitted (so every decision writes). vs get / vs set: the rate divided by "
        "the `IMap.get` / `IMap.set(ttl)` floor of the same spread and concurrency. "
        "Cluster ops per decision below 1: requests on one key batched into one "
        "operation. CAS attempts and lock waits come from the strategies' observer hooks "
        "(per decision and per locked batch). Load: the highest 1-minute load average at "
        f"the end of its runs ({report['machine']['cpus']} CPUs). Burst check per round: "
        f"{grid['burst']['requests']} requests from {grid['burst']['tasks']} tasks on a "
        f"limit of {grid['burst']['limit']} must admit exactly {grid['burst']['limit']}.",
        "",
        "| keys | N | contender | decisions/s | vs get | vs set | p50 ms | p99 ms | p99.9 ms "
        "| ops/decision | CAS attempts/decision | lock wait mean / p99 ms | load | check |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for spread, by_name in grid["scenarios"].items():
        for tasks in map(str, grid["concurrency"]):
            for name, by_tasks in by_name.items():
                r = by_tasks.get(tasks)
                if r is None:
                    continue
                is_strategy = "cluster_ops_per_decision" in r
                out.append(
                    f"| {spread} | {tasks} | {name} | {r['per_second']:.0f} | "
                    f"{r['vs_get']:.2f} | {r['vs_set']:.2f} | {r['p50_ms']:.2f} | "
                    f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | "
                    + (
                        f"{r['cluster_ops_per_decision']:.3f} | "
                        f"{r['cas_attempts_per_decision']:.3f} | "
                        f"{r['lock_wait_mean_ms']:.2f} / {r['lock_wait_p99_ms']:.2f} | "
                        if is_strategy
                        else "1 | - | - | "
                    )
                    + f"{r['load_average']:.2f} | "
                    + ("FAILED" if r["problems"] else ("exact" if is_strategy else "-"))
                    + " |"
                )
    out.append("")
    return out


def _endtoend_section(report: Report) -> list[str]:
    """The end-to-end table, one row per strategy and scenario."""
    e2e = report.get("endtoend")
    if not e2e:
        return []
    out: list[str] = []
    o = report["options"]
    out += [
        "## End to end (wrk through nginx, 3 replicas)",
        "",
        f"wrk, {o['connections']} connections, {o['duration']} s per run, median of "
        f"{o['e2e_rounds']} rounds; vs /health: the rate divided by `/health`'s in the same "
        "round. under: one client far under its limit; past: one client long past it; "
        f"exact: one client with a limit of {o['exact_limit']} flooded (exactly that many "
        f"200s); clients: {o['clients']} clients under their limits, each request naming "
        "the next (their stored usage must sum to the 200s, plus at most what was in "
        "flight). Load: the highest 1-minute load average at the end of its runs.",
        "",
        "| strategy | scenario | requests/s | vs /health | p50 ms | p99 ms | p99.9 ms "
        "| load | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for strategy, e2e_rows in e2e.items():
        for scenario, row in e2e_rows.items():
            check = "FAILED: " + "; ".join(row["problems"]) if row["problems"] else "exact"
            out.append(
                f"| {strategy} | {scenario} | {row['per_second']:.0f} | "
                f"{row['ratio_to_health']:.2f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{row['p999_ms']:.2f} | {row['load_average']:.2f} | {check} |"
            )
    out.append("")
    return out


def _k6_steps_section(report: Report) -> list[str]:
    """The k6 rate steps, one row per strategy and step."""
    steps = report.get("k6_steps")
    if not steps:
        return []
    out: list[str] = []
    any_steps = next(iter(steps.values()))
    out += [
        "## k6: constant arrival rate steps",
        "",
        f"Each step {any_steps['step_seconds']} s at a fixed arrival rate, to "
        f"{any_steps['clients_per_step']} fresh clients whose limit is about half of "
        "what each is sent (half the requests admitted). Held: p99 under 100 ms, at most "
        "1 % of iterations dropped (k6 had no free VU), nothing unexpected, and exactly "
        "the expected admissions; more than expected would be FAILED. Before the steps, "
        f"{any_steps['warmup_seconds']} s at the first step's rate, not recorded. Load: "
        "the machine's 1-minute load average at the step's end "
        f"({report['machine']['cpus']} CPUs).",
        "",
        "| strategy | target/s | sent/s | dropped | admitted / expected | p50 ms | p99 ms "
        "| held | load |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for strategy, result in steps.items():
        for step in result["steps"]:
            verdict = "FAILED" if step["problems"] else ("yes" if step["held"] else "no")
            out.append(
                f"| {strategy} | {step['rate']} | {step['per_second']:.0f} | "
                f"{step['dropped']} | {step['admitted']} / {step['expected']} | "
                f"{step['p50_ms']:.2f} | {step['p99_ms']:.2f} | {verdict} | "
                f"{step['load_average']:.2f} |"
            )
    out += [
        "",
        "Highest rate held: "
        + ", ".join(f"{k} {v['highest_held']}/s" for k, v in steps.items())
        + ".",
        "",
    ]
    return out


def _k6_original_section(report: Report) -> list[str]:
    """The original's k6 scenario: its exit code and figures, or why it did not run."""
    original = report.get("k6_original")
    if original:
        return [
            "## k6: the original's scenario, made exact",
            "",
            f"`k6/original_scenario.js` on `{original['strategy']}`: k6 exited "
            f"{original['exit_code']} ("
            + ("every threshold held" if original["exit_code"] == 0 else "a threshold failed")
            + ").",
            "",
            "```",
            original["figures"],
            "```",
            "",
        ]
    options = report["options"]
    if options.get("original") is False and "k6" in options.get("only", ["k6"]):
        return ["The original's k6 scenario was not run (`--no-original`).", ""]
    return []


def _markdown(report: Report, plots: list[str]) -> str:
    out = [
        *_heading(report),
        *_inprocess_section(report),
        *scale_markdown(report.get("scale")),
        *_endtoend_section(report),
        *policy_section(report.get("policies")),
        *rls_section(report.get("rls")),
        *_k6_steps_section(report),
        *_k6_original_section(report),
        *failover_markdown(report.get("failover")),
    ]
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def write_report(report: Report, folder: Path) -> list[Path]:
    """Writes report.json, report.md and the plots into ``folder``; returns the paths."""
    from benchmarks.plots import draw

    folder.mkdir(parents=True, exist_ok=True)
    plots = draw(report, folder)
    report["failed"] = failed(report)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path = folder / "report.md"
    md_path.write_text(_markdown(report, [p.name for p in plots]))
    return [json_path, md_path, *plots]
