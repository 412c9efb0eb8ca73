"""CPU time of the stack's processes, read from ``/proc``, to give a cost per decision.

A replica is a Sanic main process with worker children, a member one JVM; each is a part
the stack runner started in its own session. Its CPU is the ``utime + stime`` of the
part's process and of every descendant alive at the time of reading: a worker that exits
during a run would take its CPU with it, so a run must not restart replicas.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "CpuMeter",
    "CpuSample",
    "ThreadTime",
    "children_by_parent",
    "jit_cpu_seconds",
    "machine_busy_seconds",
    "process_tree",
    "thread_times",
    "tree_cpu_seconds",
]

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


#: What reading a file of a process or thread that just exited raises.
GONE = (FileNotFoundError, ProcessLookupError, PermissionError)


def _parse_stat(text: str) -> tuple[str, list[str]]:
    """The command name and the fields after it of a ``stat`` file; the name (field 2) is
    in parentheses and may hold spaces, so the split starts after it."""
    return text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return _parse_stat((PROC / str(pid) / "stat").read_text())[1]
    except GONE:
        return None


def _cpu_seconds(fields: list[str]) -> tuple[float, float]:
    """User and system seconds: after the name, state(0) ppid(1) ... utime(11) stime(12)."""
    return int(fields[11]) / TICKS_PER_SECOND, int(fields[12]) / TICKS_PER_SECOND


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root_pids: Iterable[int]) -> list[int]:
    """These processes and all their descendants alive now, each once."""
    children = children_by_parent()
    pending = list(root_pids)
    seen: dict[int, None] = {}
    while pending:
        pid = pending.pop()
        if pid not in seen:
            seen[pid] = None
            pending.extend(children.get(pid, []))
    return list(seen)


def tree_cpu_seconds(root_pids: Iterable[int]) -> float:
    """User plus system CPU seconds of these processes and all their descendants."""
    fields = (_stat_fields(pid) for pid in process_tree(root_pids))
    return sum(sum(_cpu_seconds(f)) for f in fields if f is not None)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy, all processes and the kernel (the
    ``cpu`` line of ``/proc/stat`` less idle and iowait): on a shared machine, work
    outside the measured parts (the load generator, a database's own housekeeping) takes
    the same cores."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """CPU seconds per group of processes between two readings."""

    seconds: Mapping[str, float]

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {group: 1000 * s / max(requests, 1) for group, s in self.seconds.items()}


class CpuMeter:
    """The CPU of named groups of process trees (replicas, members) over a run:
    ``before = meter.read()``, the run, then ``meter.since(before)``.

    For each group of ``jit_of`` (JVMs), ``<name>_jit`` is also read: the part of that
    group's CPU its JIT compiler threads used. A member started minutes ago still spends
    much of its CPU compiling (docs/profiling.md); a long-running one does not, so the
    cost of a decision in a warm cluster is the group's CPU minus this part."""

    def __init__(
        self,
        groups: Mapping[str, Iterable[int | None]],
        jit_of: Iterable[str] = (),
        machine: bool = False,
    ) -> None:
        # A part that is not running has no pid, and no CPU: pid 0 would stand for the
        # whole machine (its children are init and the kernel's threads).
        self.groups = {name: tuple(p for p in pids if p) for name, pids in groups.items()}
        self.jit_of = tuple(jit_of)
        #: Also read ``machine``: the busy CPU of the whole machine (see
        #: :func:`machine_busy_seconds`).
        self.machine = machine

    def read(self) -> dict[str, float]:
        seconds = {name: tree_cpu_seconds(pids) for name, pids in self.groups.items()}
        for name in self.jit_of:
            seconds[f"{name}_jit"] = jit_cpu_seconds(self.groups[name])
        if self.machine:
            seconds["machine"] = machine_busy_seconds()
        return seconds

    def since(self, before: Mapping[str, float]) -> CpuSample:
        after = self.read()
        return CpuSample({name: after[name] - before[name] for name in after})


@dataclasses.dataclass(frozen=True)
class ThreadTime:
    """One thread's CPU split into user and kernel time, and how often it gave the CPU up.

    On loopback a ``send`` also runs the receiver's TCP processing and wakes its reader, so
    kernel time and voluntary switches (sleeps on a queue or a socket) show a per-message
    cost that a sampling profiler of Java or Python code does not see."""

    name: str
    user_seconds: float
    system_seconds: float
    voluntary_switches: int
    involuntary_switches: int

    def minus(self, before: ThreadTime | None) -> ThreadTime:
        """What the thread used since ``before`` (all of it for a thread new since)."""
        return self if before is None else self._combine(before, -1)

    def plus(self, other: ThreadTime, name: str) -> ThreadTime:
        """Both threads' use together, under ``name`` (a group of threads)."""
        return dataclasses.replace(self._combine(other, 1), name=name)

    def _combine(self, other: ThreadTime, sign: int) -> ThreadTime:
        return ThreadTime(
            self.name,
            self.user_seconds + sign * other.user_seconds,
            self.system_seconds + sign * other.system_seconds,
            self.voluntary_switches + sign * other.voluntary_switches,
            self.involuntary_switches + sign * other.involuntary_switches,
        )


def _switches(status: str, field: str) -> int:
    _, _, rest = status.partition(f"\n{field}:")
    return int(rest.split()[0]) if rest else 0


def thread_times(root_pids: Iterable[int]) -> dict[int, ThreadTime]:
    """Every thread of these processes and their descendants, by thread id, named as the
    kernel knows it (``comm``: 15 characters at most)."""
    found: dict[int, ThreadTime] = {}
    for pid in process_tree(root_pids):
        try:
            tasks = list((PROC / str(pid) / "task").iterdir())
        except GONE:
            continue
        for task in tasks:
            try:
                name, fields = _parse_stat((task / "stat").read_text())
                status = (task / "status").read_text()
            except GONE:
                continue
            found[int(task.name)] = ThreadTime(
                name,
                *_cpu_seconds(fields),
                _switches(status, "voluntary_ctxt_switches"),
                _switches(status, "nonvoluntary_ctxt_switches"),
            )
    return found


#: How the kernel names HotSpot's compiler threads (``comm`` keeps 15 characters).
JIT_THREAD_PREFIXES = ("C1 CompilerThre", "C2 CompilerThre")


def jit_cpu_seconds(root_pids: Iterable[int]) -> float:
    """CPU seconds of the JIT compiler threads of these processes and their descendants."""
    return sum(
        t.user_seconds + t.system_seconds
        for t in thread_times(root_pids).values()
        if t.name.startswith(JIT_THREAD_PREFIXES)
    )
