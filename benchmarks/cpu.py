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

__all__ = ["CpuMeter", "CpuSample", "children_by_parent", "tree_cpu_seconds"]

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_cpu_seconds(root_pids: Iterable[int]) -> float:
    """User plus system CPU seconds of these processes and all their descendants."""
    children = children_by_parent()
    total_ticks = 0
    pending = list(root_pids)
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12).
        total_ticks += int(fields[11]) + int(fields[12])
        pending.extend(children.get(pid, []))
    return total_ticks / TICKS_PER_SECOND


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """CPU seconds per group of processes between two readings."""

    seconds: Mapping[str, float]

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {group: 1000 * s / max(requests, 1) for group, s in self.seconds.items()}


class CpuMeter:
    """The CPU of named groups of process trees (replicas, members) over a run:
    ``before = meter.read()``, the run, then ``meter.since(before)``."""

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self.groups = {name: tuple(pids) for name, pids in groups.items()}

    def read(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(pids) for name, pids in self.groups.items()}

    def since(self, before: Mapping[str, float]) -> CpuSample:
        after = self.read()
        return CpuSample({name: after[name] - before[name] for name in self.groups})
