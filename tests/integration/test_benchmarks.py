"""The benchmark tool (``python -m benchmarks``) in its smoke mode: tiny sizes, every part
of it (in process, wrk end to end, k6 steps, policies, the rate limit service through
Envoy, the report and its plots) on a stack of its own, so that the tool keeps working
between the runs that produce a real report. The rate limit part's smoke run leaves the
peer (envoyproxy/ratelimit, built with Go) out, and takes half a minute at most.

No figure is asserted (the machine is shared and the sizes tiny); exactness is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.stack import bench_stack
from stack import ROOT
from tests.cluster import BASE_PORT

#: The smoke run's stack sits this far above the suite's ports (members, and HTTP parts
#: 15000 above them), clear of the suite's other stacks (+40, +60, +100).
PORT_OFFSET = 150
PLOTS = ("throughput.png", "latency.png", "ratios.png", "k6_steps.png")


def test_smoke_run_writes_an_exact_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m benchmarks --smoke`` writes JSON, Markdown and every plot, no run over-admits,
    and nothing it started is left running."""
    monkeypatch.setenv("RATELIMIT_BENCH_BASE_PORT", str(BASE_PORT + PORT_OFFSET))
    stack = bench_stack()
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=480,
            check=False,
        )
    finally:
        # The tool stops its own stack; this covers a run killed by the timeout.
        left = stack.stop()
    print(f"\nsmoke run: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-6000:]}"
    assert left == [], f"the smoke run left {left} running"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failed"] == []
    assert set(report["inprocess"]["scenarios"]["hot key"]) >= {"lock", "cas", "entry_processor"}
    assert report["endtoend"] and report["k6_steps"]
    policies = report["policies"]
    assert set(policies["inprocess"]["strategies"]) == {"lock", "cas", "entry_processor"}
    assert set(policies["endtoend"]["strategies"]) == {"entry_processor"}
    for steps in report["k6_steps"].values():
        assert all(s["admitted"] <= s["expected"] for s in steps["steps"])
    rls = report["rls"]
    assert rls["peer"]["ran"] is False and rls["problems"] == []
    assert {"http_decide_1", "http_decide_3"} <= set(rls["decisions"])
    assert {"off_one", "ours_one", "off_ips", "ours_ips"} <= set(rls["envoy"])
    assert "ours_one_vs_off" in rls["ratios"]
    assert all(flood["limit"] == 100 for flood in rls["floods"]["ours"])
    assert rls["envoy"]["ours_one"]["envoy"]["ok"] > 0
    failover = report["failover"]
    assert failover["kinds"].get("admitted", 0) > 0 and failover["windows"] == 2000
    assert failover["admitted_again"] == 0 and "failed_open" not in failover["kinds"]
    markdown = (tmp_path / "report.md").read_text()
    assert "## Headline" in markdown and "**Exact**" in markdown
    assert "## Rate limit service" in markdown
    assert "## Failover" in markdown
    for plot in PLOTS:
        assert (tmp_path / plot).stat().st_size > 0, plot
