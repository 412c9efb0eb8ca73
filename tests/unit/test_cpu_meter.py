"""The benchmarks' CPU accounting from /proc (per decision, replicas and members apart)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

import pytest

from benchmarks.cpu import CpuMeter, tree_cpu_seconds

pytestmark = pytest.mark.unit

#: Burns 0.4 s of CPU, then waits for a line on stdin (so it is still alive when read).
BUSY = (
    "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ninput()"
)


def test_a_process_tree_counts_the_cpu_of_its_descendants() -> None:
    """CPU burnt by a child shows in the tree of its idle parent (as a replica's workers
    in the replica's), and in no unrelated tree."""
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(BUSY)}; true"
    parent = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, text=True)
    meter = CpuMeter({"parent": [parent.pid], "nobody": [2**22 + 1]})
    before = meter.read()
    try:
        deadline = time.monotonic() + 30
        while tree_cpu_seconds([parent.pid]) - before["parent"] < 0.35:
            assert time.monotonic() < deadline, "the child never burnt its CPU"
            time.sleep(0.05)
        used = meter.since(before)
    finally:
        parent.communicate("\n", timeout=30)
    assert 0.35 <= used.seconds["parent"] < 5
    assert used.seconds["nobody"] == 0
    assert used.per_request_ms(1000)["parent"] == pytest.approx(used.seconds["parent"])
