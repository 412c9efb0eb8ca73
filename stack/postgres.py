"""PostgreSQL, the registry's durable copy: it keeps the clients across restarts of the
whole cluster (the members write through to it and load from it at start).

It is a part like the others: its data folder is created (``initdb``) on first start
under the run folder and kept by a stop; it runs as Debian's ``postgres`` user when the
stack runs as root (PostgreSQL refuses root), listens on loopback TCP only, is awaited
with ``pg_isready`` and stopped with SIGINT, its fast shutdown.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from stack.errors import StackError
from stack.layout import LOOPBACK
from stack.process import Part, Processes, port_accepts

#: Where Debian's postgresql package puts each major version's server binaries.
POSTGRES_LIB = Path("/usr/lib/postgresql")
#: The registry database, its role, and the unprivileged user that runs the server when
#: the stack runs as root (the one Debian's package creates).
DATABASE_NAME = "ratelimit"
DATABASE_USER = "ratelimit"
DATABASE_OS_USER = "postgres"


class Postgres:
    """The stack's PostgreSQL server on ``port``, its files under ``folder``."""

    #: The part's name (its pid file and log).
    NAME = "postgres"

    def __init__(self, processes: Processes, port: int, folder: Path) -> None:
        self.processes = processes
        self.port = port
        #: Its data (``data/``) outlives a stop (`make clean-data`).
        self.folder = folder

    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{LOOPBACK}:{self.port}/{DATABASE_NAME}"

    def part(self) -> Part:
        """The server on loopback TCP only (no Unix socket), as an unprivileged user; its
        data folder must exist (:meth:`start` creates it)."""
        argv = [
            *run_unprivileged(),
            str(postgres_bin_dir() / "postgres"),
            "-D",
            str(self.folder / "data"),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=100",
        ]
        return Part(
            self.NAME,
            argv,
            self.port,
            ready_check=lambda: database_ready(self.port),
            stop_signal=signal.SIGINT,
        )

    def start(self, deadline_seconds: float = 60.0) -> float:
        """Creates the data folder on first start (``initdb``, trust authentication on
        loopback, role ``ratelimit``), starts the server, waits until it accepts
        connections and creates the ``ratelimit`` database when missing. The members
        create their table in it. Returns the seconds it took."""
        started_at = time.monotonic()
        data = self.folder / "data"
        if not (data / "PG_VERSION").is_file():
            self._initdb(data)
        self.processes.start_parts([self.part()], deadline_seconds)
        exists = self.sql("SELECT 1 FROM pg_database WHERE datname = 'ratelimit'", "postgres")
        if exists.strip() != "1":
            self.sql(f"CREATE DATABASE {DATABASE_NAME}", "postgres")
        return time.monotonic() - started_at

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended; the data stays."""
        self.processes.stop([self.NAME])

    def remove_data(self) -> None:
        """Deletes the registry's durable copy; refuses while the server runs."""
        if self.processes.pid_of(self.NAME) is not None:
            raise StackError("PostgreSQL is running: stop the stack first (make down)")
        shutil.rmtree(self.folder, ignore_errors=True)

    def sql(self, statement: str, database: str = DATABASE_NAME) -> str:
        """Runs one statement with ``psql`` and returns its unaligned output."""
        argv = [
            str(postgres_bin_dir() / "psql"),
            *("-h", LOOPBACK, "-p", str(self.port), "-U", DATABASE_USER, "-d", database),
            *("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise StackError(f"psql {statement!r} failed: {done.stderr.strip()}")
        return done.stdout

    def _initdb(self, data: Path) -> None:
        self.processes.log_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(data, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = unprivileged_owner()
        if owner is not None:
            os.chown(self.folder, *owner)
            let_traverse(self.folder.parent, owner[0])
        argv = [
            *run_unprivileged(),
            str(postgres_bin_dir() / "initdb"),
            *("-D", str(data), "-U", DATABASE_USER),
            *("--auth=trust", "--encoding=UTF8", "--locale=C"),
        ]
        log_path = self.processes.log_path("initdb")
        with open(log_path, "wb") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd="/", check=False)
        if done.returncode != 0:
            raise StackError(
                f"initdb failed; last lines of {log_path}:\n" + self.processes.log_tail("initdb")
            )


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL server installed from Debian's packages."""
    versions = sorted(
        (p for p in POSTGRES_LIB.glob("*/bin") if (p / "postgres").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise StackError(
            "PostgreSQL is not installed: run `make up` as root, or apt-get install postgresql"
        )
    return versions[-1]


def unprivileged_owner() -> tuple[int, int] | None:
    """(uid, gid) of the user that runs PostgreSQL when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(DATABASE_OS_USER)
    except KeyError:
        raise StackError(
            f"user {DATABASE_OS_USER!r} is missing: apt-get install postgresql creates it"
        ) from None
    return entry.pw_uid, entry.pw_gid


def let_traverse(folder: Path, uid: int) -> None:
    """Lets ``uid`` pass through ``folder`` and each folder above it (search permission
    for others, never read): a checkout in a private folder such as ``mktemp -d``'s
    (mode 700, root's) would otherwise keep PostgreSQL from its data folder."""
    for path in (folder, *folder.parents):
        mode = path.stat().st_mode
        if path.stat().st_uid != uid and not mode & 0o001:
            path.chmod(mode | 0o001)


def run_unprivileged() -> list[str]:
    """The prefix that runs a PostgreSQL program as its own user: ``setpriv`` replaces
    itself with the program, so the pid we keep is the server's."""
    owner = unprivileged_owner()
    if owner is None:
        return []
    uid, gid = owner
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def database_ready(port: int) -> bool:
    """Whether PostgreSQL on ``port`` accepts connections (``pg_isready``)."""
    if not port_accepts(port):
        return False
    check = [
        str(postgres_bin_dir() / "pg_isready"),
        *("-q", "-h", LOOPBACK, "-p", str(port), "-U", DATABASE_USER, "-d", "postgres"),
    ]
    return subprocess.run(check, check=False, timeout=10).returncode == 0
