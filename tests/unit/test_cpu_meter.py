"""The benchmarks' CPU accounting from /proc (per decision, replicas and members apart)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import pytest

from benchmarks.tools.cpu import CpuMeter, machine_busy_seconds, tree_cpu_seconds

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
    meter = CpuMeter({"parent": [parent.pid], "nobody": [2**22 + 1], "not running": [None, 0]})
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
    assert used.seconds["not running"] == 0  # not pid 0's "tree", the whole machine
    assert used.per_request_ms(1000)["parent"] == pytest.approx(used.seconds["parent"])


def test_thread_times_split_a_busy_thread_from_an_idle_one() -> None:
    """A thread that burns CPU shows it as its own user time, while a thread asleep on an
    event gains none and counts voluntary switches."""
    import threading

    from benchmarks.tools.cpu import thread_times

    stop = threading.Event()
    ids: dict[str, int] = {}

    def burn() -> None:
        ids["busy"] = threading.get_native_id()
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        stop.wait()

    def sleep() -> None:
        ids["idle"] = threading.get_native_id()
        for _ in range(5):
            stop.wait(0.01)
        stop.wait()

    threads = [threading.Thread(target=burn), threading.Thread(target=sleep)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            found = thread_times([os.getpid()])
            busy = found.get(ids.get("busy", -1))
            if busy is not None and busy.user_seconds + busy.system_seconds >= 0.25:
                break
            assert time.monotonic() < deadline, "the busy thread never showed its CPU"
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    idle = found[ids["idle"]]
    assert idle.user_seconds + idle.system_seconds < 0.1
    assert idle.voluntary_switches >= 5
    assert busy.minus(busy).user_seconds == 0


def test_member_thread_names_group_by_kind() -> None:
    """A thread dump's names and native ids are read in either notation, and threads of
    one kind across members and numbers fall into one row."""
    from benchmarks.tools.profile import JAVA_THREAD, thread_group

    dump = (
        '"hz.brave_x.partition-operation.thread-1" #45 daemon prio=5 nid=0x3039 waiting\n'
        '"C2 CompilerThread0" #8 daemon prio=9 nid=12346 runnable\n'
    )
    parsed = {int(m["nid"], 0): m["name"] for m in JAVA_THREAD.finditer(dump)}
    assert parsed == {
        0x3039: "hz.brave_x.partition-operation.thread-1",
        12346: "C2 CompilerThread0",
    }
    assert thread_group(parsed[0x3039]) == "partition-operation.thread-N"
    assert thread_group("hz.calm_y.partition-operation.thread-0") == thread_group(parsed[0x3039])
    assert thread_group(parsed[12346]) == "C2 CompilerThreadN"


def test_jit_part_counts_only_compiler_threads() -> None:
    """Only threads the kernel names as HotSpot's compiler threads count as a JVM's JIT
    part: CPU of a thread so named shows there, CPU of the process's others does not."""
    import threading

    from benchmarks.tools.cpu import jit_cpu_seconds

    done = threading.Event()

    def compile_for(seconds: float) -> None:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write("C2 CompilerThread0")
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        done.wait()  # alive, so that its CPU is still in /proc when read

    before = jit_cpu_seconds([os.getpid()])
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
    assert jit_cpu_seconds([os.getpid()]) - before < 0.05
    compiler = threading.Thread(target=compile_for, args=(0.3,))
    compiler.start()
    try:
        deadline = time.monotonic() + 30
        while jit_cpu_seconds([os.getpid()]) - before < 0.25:
            assert time.monotonic() < deadline, "the compiler thread's CPU never counted"
            time.sleep(0.01)
    finally:
        done.set()
        compiler.join(timeout=30)


def test_thread_table_sums_threads_of_one_kind_per_decision() -> None:
    """Threads of one kind on different members make one row, the sum of every thread
    comes first, CPU is in ms per decision, and a thread new since the first reading
    counts whole."""
    from benchmarks.tools.cpu import ThreadTime
    from benchmarks.tools.profile import thread_table

    before = {
        1: ThreadTime("hz.a.partit", 1.0, 0.5, 10, 0),
        2: ThreadTime("hz.b.partit", 2.0, 0.0, 20, 0),
    }
    after = {
        1: ThreadTime("hz.a.partit", 1.4, 0.6, 30, 2),
        2: ThreadTime("hz.b.partit", 2.2, 0.1, 40, 0),
        3: ThreadTime("C2 CompilerThre", 0.1, 0.0, 0, 0),
    }
    names = {
        1: "hz.a.partition-operation.thread-0",
        2: "hz.b.partition-operation.thread-1",
        3: "C2 CompilerThread0",
    }
    rows = thread_table("members", before, after, names, decisions=100)
    assert rows == [
        "| members | all | 7.000 | 2.000 | 0.40 | 0.02 |",
        "| members | partition-operation.thread-N | 6.000 | 2.000 | 0.40 | 0.02 |",
        "| members | C2 CompilerThreadN | 1.000 | 0.000 | 0.00 | 0.00 |",
    ]


def test_the_machine_reading_counts_cpu_burnt_by_any_process() -> None:
    """The machine's busy CPU grows by at least what this process burns meanwhile (it is
    in no group of the meter), and the meter reports it as ``machine``."""
    meter = CpuMeter({}, machine=True)
    before = meter.read()
    burnt_from = time.process_time()
    while time.process_time() - burnt_from < 0.3:
        sum(range(10_000))
    used = meter.since(before).seconds
    assert used["machine"] >= 0.25
    assert machine_busy_seconds() >= before["machine"] + used["machine"]
