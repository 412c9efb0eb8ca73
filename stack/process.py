"""The processes of one run folder: spawned, found again, awaited and stopped by pid.

Every process is started in its own session (so a stop reaches its children too) with
its log in ``<run dir>/logs`` and its pid in ``<run dir>/pids``. A pid file holds the
pid and the process's start time (from ``/proc``), so a recycled pid is never mistaken
for ours, and a second ``up`` starts nothing twice. Its process group is recorded beside
it, so a wait for a part that has exited already still waits for the rest of its group
(a worker that outlives its parent by a moment still holds the part's port).

What a part is (its command, port and readiness) is the callers'; this module knows
only how to run one, and the probes and the polling loop every wait uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from stack.errors import StackError
from stack.layout import LOOPBACK, ROOT


@dataclasses.dataclass(frozen=True)
class Part:
    """One process of the stack."""

    name: str
    argv: Sequence[str]
    port: int
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Path that answers 200 on ``port`` once the part is ready; None: listening is enough.
    ready_path: str | None = None
    #: Prefixes of variables of the caller's environment the part must not inherit.
    unset_env: tuple[str, ...] = ()
    #: Readiness check of a part that is not HTTP (takes precedence over ``ready_path``).
    ready_check: Callable[[], bool] | None = None
    #: Signal that stops the part gracefully, sent to its own process (which stops its
    #: children); None: SIGTERM to its whole process group.
    stop_signal: int | None = None


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(port: int, path: str, host: str = LOOPBACK) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def part_is_ready(part: Part) -> bool:
    if part.ready_check is not None:
        return part.ready_check()
    if part.ready_path is None:
        return port_accepts(part.port)
    return http_ok(part.port, part.ready_path)


def poll_until(
    condition: Callable[[], bool],
    deadline_seconds: float,
    what: str,
    check_alive: Callable[[], None] = lambda: None,
    interval: float = 0.1,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Polls ``condition`` until it holds; ``check_alive`` raises as soon as a part died.
    At the deadline the error carries ``detail()``: what the caller knows of the cause."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        check_alive()
        if condition():
            return
        if time.monotonic() >= deadline:
            raise StackError(
                f"timed out after {deadline_seconds:.0f}s waiting for {what}{detail()}"
            )
        time.sleep(interval)


class Processes:
    """The parts started under one run folder: their pid files and their logs."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir.resolve()
        self.log_dir = self.run_dir / "logs"
        self.pid_dir = self.run_dir / "pids"

    # ---- pid files and logs ---------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def _group_path(self, name: str) -> Path:
        return self.pid_dir / f"{name}.group"

    def _forget(self, name: str) -> None:
        self._pid_path(name).unlink(missing_ok=True)
        self._group_path(name).unlink(missing_ok=True)

    def _group(self, name: str) -> int | None:
        """The part's process group: recorded at its start, so known after it exited
        (else, for a part started before groups were recorded, its live one)."""
        try:
            return int(self._group_path(name).read_text())
        except (OSError, ValueError):
            pid = self.pid_of(name)
            return None if pid is None else _group_of(pid)

    def _stop_signal_of(self, name: str) -> int | None:
        try:
            fields = self._pid_path(name).read_text().split()
        except OSError:
            return None
        return int(fields[2]) if len(fields) > 2 else None

    def pid_of(self, name: str) -> int | None:
        """The live pid of a part started under this run folder, or None."""
        try:
            pid_text, started, *_ = self._pid_path(name).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        stat = _stat(pid)
        if stat is None or stat[0] == "Z" or stat[1] != started:
            return None  # gone, a zombie, or the pid now belongs to another process
        return pid

    def running(self) -> dict[str, int]:
        if not self.pid_dir.is_dir():
            return {}
        found = {}
        for path in sorted(self.pid_dir.glob("*.pid")):
            pid = self.pid_of(path.stem)
            if pid is not None:
                found[path.stem] = pid
        return found

    def status(self) -> list[tuple[str, int | None]]:
        """Every part with a pid file, and its live pid (None: it died)."""
        names = sorted(p.stem for p in self.pid_dir.glob("*.pid")) if self.pid_dir.is_dir() else []
        return [(name, self.pid_of(name)) for name in names]

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def tails(self, names: Sequence[str]) -> str:
        """The last lines of each part's log, each under its name."""
        return "".join(f"\n--- {name} ---\n" + self.log_tail(name) for name in names)

    def raise_if_dead(self, names: Sequence[str], when: str = "during start-up") -> None:
        for name in names:
            if self.pid_of(name) is None:
                raise StackError(
                    f"{name} exited {when}; last lines of {self.log_path(name)}:\n"
                    + self.log_tail(name)
                )

    # ---- start ------------------------------------------------------------------------

    def spawn(self, part: Part) -> int:
        """Starts the part unless it runs already; returns its pid. Does not wait."""
        existing = self.pid_of(part.name)
        if existing is not None:
            return existing
        if not port_is_free(part.port):
            raise StackError(
                f"{part.name}: port {part.port} on {LOOPBACK} is already in use by a process "
                "this stack did not start; stop it or choose another port"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        pid_path = self._pid_path(part.name)
        pid_path.unlink(missing_ok=True)
        # Started through a shell that exits at once, so the part is not our child: it
        # outlives the CLI, and whatever stops it need not reap it.
        launcher = ["/bin/sh", "-c", '"$@" & echo $! > "$0"', str(pid_path), *part.argv]
        log_path = self.log_path(part.name)
        if log_path.exists():
            # A fresh log per start: the tail in an error must be this start's.
            log_path.replace(log_path.with_suffix(".log.previous"))
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(part.unset_env)}
        with open(log_path, "wb") as log:
            subprocess.run(
                launcher,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**inherited, **part.env},
                start_new_session=True,
                check=True,
            )
        pid = int(pid_path.read_text())
        stat = _stat(pid)
        if stat is None:
            raise StackError(
                f"{part.name} exited at once; last lines of {self.log_path(part.name)}:\n"
                + self.log_tail(part.name)
            )
        # The stop signal is kept with the pid: `make down` stops parts it does not know.
        stop = "" if part.stop_signal is None else f" {int(part.stop_signal)}"
        pid_path.write_text(f"{pid} {stat[1]}{stop}\n")
        group = _group_of(pid)
        if group is not None:
            self._group_path(part.name).write_text(f"{group}\n")
        return pid

    def start_parts(
        self, parts: Sequence[Part], deadline_seconds: float = 60, wait: bool = True
    ) -> None:
        """Spawns the parts not running yet and, with ``wait``, waits until each is ready
        (without: a part that may never be, such as a replica whose cluster is down); on
        failure, stops the ones it started."""
        fresh = [p.name for p in parts if self.pid_of(p.name) is None]
        try:
            for part in parts:
                self.spawn(part)
            for part in parts if wait else ():
                poll_until(
                    lambda part=part: part_is_ready(part),  # type: ignore[misc]
                    deadline_seconds,
                    f"{part.name} to be ready on port {part.port}",
                    lambda part=part: self.raise_if_dead([part.name]),  # type: ignore[misc]
                    detail=lambda part=part: self.tails([part.name]),  # type: ignore[misc]
                )
        except BaseException:
            self.stop(fresh)
            raise

    def wait_until(
        self,
        condition: Callable[[], bool],
        deadline_seconds: float,
        what: str,
        parts: Sequence[str] = (),
    ) -> float:
        """Polls ``condition`` until it holds and returns the seconds that took. Fails as
        soon as one of ``parts`` exits, or at the deadline, either way with the tail of
        their logs, which usually say why."""
        started = time.monotonic()
        poll_until(
            condition,
            deadline_seconds,
            what,
            lambda: self.raise_if_dead(parts, f"while waiting for {what}"),
            detail=lambda: self.tails(parts),
        )
        return time.monotonic() - started

    # ---- stop -------------------------------------------------------------------------

    def stop(self, names: Sequence[str] | None = None, grace_seconds: float = 15.0) -> list[str]:
        """SIGTERM, then SIGKILL after ``grace_seconds``; returns the names stopped. Returns
        once every process of each part's group is gone, so its ports are free again."""
        targets = {n: p for n, p in self.running().items() if names is None or n in names}
        groups = [self._group(n) for n in targets]
        for name, pid in targets.items():
            own_signal = self._stop_signal_of(name)
            if own_signal is None:
                _signal_group(pid, signal.SIGTERM)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, own_signal)
        deadline = time.monotonic() + grace_seconds

        def all_gone() -> bool:
            return not any(self.pid_of(n) for n in targets) and not _live_in_groups(groups)

        while time.monotonic() < deadline and not all_gone():
            time.sleep(0.1)
        for group in _live_in_groups(groups):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        poll_until(all_gone, 10, "processes to exit")
        for name in targets if names is not None else [n for n, _ in self.status()]:
            self._forget(name)
        return sorted(targets)

    def kill(self, name: str) -> None:
        """SIGKILL one part, as a crash would; used by the fault tests."""
        pid = self.pid_of(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        _signal_group(pid, signal.SIGKILL)
        self.wait_for_exit(name, 10)

    def terminate(self, name: str) -> None:
        """SIGTERM to the part's own process, not its group, and no wait: how an
        orchestrator stops a replica, which then drains and stops its workers itself."""
        pid = self.pid_of(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def wait_for_exit(self, name: str, deadline_seconds: float) -> None:
        """Waits until the part and every other process of its group have exited: a
        worker that outlives its parent by a moment still holds the part's port."""
        group = self._group(name)
        poll_until(
            lambda: self.pid_of(name) is None and not _live_in_groups([group]),
            deadline_seconds,
            f"{name} to exit",
        )
        self._forget(name)


# ---- /proc and process groups -------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None
    if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None if there is none."""
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], fields[19])


def _signal_group(pid: int, signum: int) -> None:
    """Signals the part's whole process group (it has one of its own), children included."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signum)


def _group_of(pid: int) -> int | None:
    """The process group of ``pid`` (each part has one of its own), or None once gone."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _live_in_groups(groups: Iterable[int | None]) -> set[int]:
    """Those of ``groups`` that still hold a process which is not a zombie."""
    wanted = {g for g in groups if g is not None}
    live: set[int] = set()
    if not wanted:
        return live
    for entry in Path("/proc").iterdir():
        fields = _stat_fields(entry.name) if entry.name.isdigit() else None
        if fields is not None and fields[0] != "Z" and int(fields[2]) in wanted:
            live.add(int(fields[2]))
    return live
