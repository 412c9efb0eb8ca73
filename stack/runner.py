"""Start, await and stop the processes of one local stack.

Every process is started in its own session (so a stop reaches its children too) with
its log in ``<run dir>/logs`` and its pid in ``<run dir>/pids``. A pid file holds the
pid and the process's start time (from ``/proc``), so a recycled pid is never mistaken
for ours, and a second ``up`` starts nothing twice.

Whether the members have formed one cluster is asked of the members themselves, through
a Hazelcast client on each, rather than read from their logs: the logs' format is not an
interface, and a member's view of the cluster is.

PostgreSQL, which keeps the client registry across restarts of the whole cluster, is a
part like the others: its data folder is created (``initdb``) on first start under the
run folder and kept by a stop; it runs as Debian's ``postgres`` user when the stack runs
as root (PostgreSQL refuses root), listens on loopback TCP only, is awaited with
``pg_isready`` and stopped with SIGINT, its fast shutdown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from hazelcast.client import HazelcastClient
from hazelcast.config import ReconnectMode

ROOT = Path(__file__).resolve().parents[1]
HAZELCAST_DIR = ROOT / "hazelcast"
HAZELCAST_JAR = HAZELCAST_DIR / "target" / "lib" / "hazelcast.jar"
PROCESSOR_JAR = HAZELCAST_DIR / "target" / "ratelimit-processor.jar"
#: Prometheus's JMX exporter, run by each member as a Java agent (its /metrics).
JMX_EXPORTER_JAR = HAZELCAST_DIR / "target" / "lib" / "jmx_prometheus_javaagent.jar"
JMX_EXPORTER_CONFIG = HAZELCAST_DIR / "jmx-exporter.yml"
#: A member's metrics port is its cluster port plus this (5701 → 17701).
MEMBER_METRICS_PORT_OFFSET = 12000
#: The registry MapStore's JDBC driver, copied beside the member jar by the Maven build.
POSTGRES_JAR = HAZELCAST_DIR / "target" / "lib" / "postgresql.jar"
#: Where Debian's postgresql package puts each major version's server binaries.
POSTGRES_LIB = Path("/usr/lib/postgresql")
#: The registry database, its role, and the unprivileged user that runs the server when
#: the stack runs as root (the one Debian's package creates).
DATABASE_NAME = "ratelimit"
DATABASE_USER = "ratelimit"
DATABASE_OS_USER = "postgres"
MEMBER_CONFIG = HAZELCAST_DIR / "hazelcast.xml"
NGINX_TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
PROMETHEUS_DIR = ROOT / "prometheus"
LOOPBACK = "127.0.0.1"
#: nginx's passive health check of each replica. Whatever these say, a replica that
#: refuses the connection is skipped for that request (proxy_next_upstream error); they
#: only decide when nginx stops trying one: after 3 failed attempts (refused, timed out,
#: or a 502/503 where the location retries those) within 5 s, for 5 s, then one request
#: tries it again. One failure was too few: a single connect that timed out in a burst
#: took a healthy replica out, and under a few hundred clients all three at once.
NGINX_REPLICA_CHECK = "max_fails=3 fail_timeout=5s"
#: Inherited variables an isolated API part does not see (prefixes): its settings are
#: then exactly the ones it is given, and its metrics folder is its own.
API_ENV_PREFIXES = ("RATELIMIT_", "PROMETHEUS_MULTIPROC_DIR")


class StackError(RuntimeError):
    """A part of the stack could not be started, awaited or stopped; the message says which."""


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


class MemberView:
    """The cluster as one member sees it, through a Hazelcast client on that member alone.

    The client starts in the background and retries until ``connect_seconds`` have passed
    (a member answers clients only once it runs, and never a client of another cluster);
    :meth:`members` reads its latest member list without waiting, so a poll stays cheap.
    One client per wait rather than one per poll: each client's goodbye is a few lines in
    the member's log, and that log's tail is what a failure shows.
    """

    def __init__(self, address: str, cluster_name: str, connect_seconds: float) -> None:
        self.address = address
        self._client = HazelcastClient(
            cluster_name=cluster_name,
            cluster_members=[address],
            # Unisocket: the client talks to this member only, so the list is its view.
            smart_routing=False,
            async_start=True,
            reconnect_mode=ReconnectMode.OFF,
            cluster_connect_timeout=connect_seconds,
            connection_timeout=2.0,
            # Soon after a member opens to clients; not so often that a member that
            # refuses this client (another cluster's) logs little else.
            retry_initial_backoff=0.1,
            retry_multiplier=1.5,
            retry_max_backoff=1.0,
        )

    def members(self) -> set[str]:
        """``host:port`` of every member this member lists; empty until it answered."""
        return {
            f"{member.address.host}:{member.address.port}"
            for member in self._client.cluster_service.get_members()
        }

    def close(self) -> None:
        self._client.shutdown()


class Stack:
    """One stack: its ports, its cluster name and its run folder."""

    def __init__(
        self,
        run_dir: Path = ROOT / ".run",
        cluster_name: str = "ratelimit",
        member_base_port: int = 5701,
        registry_quorum: int | None = None,
        member_config: Path = MEMBER_CONFIG,
        members: int = 3,
        api_base_port: int = 8081,
        nginx_port: int = 9999,
        prometheus_port: int = 9090,
        demo_app_port: int = 8090,
        database_port: int = 5432,
        registry_store: bool = True,
        member_metrics_base_port: int | None = None,
        member_options: Sequence[str] = (),
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.cluster_name = cluster_name
        self.member_base_port = member_base_port
        self.registry_quorum = registry_quorum
        self.member_config = member_config
        self.members = members
        self.api_base_port = api_base_port
        self.nginx_port = nginx_port
        self.prometheus_port = prometheus_port
        self.demo_app_port = demo_app_port
        self.database_port = database_port
        #: False: members keep the registry in memory only (to measure what the store costs).
        self.registry_store = registry_store
        #: PostgreSQL's folder; its data (``data/``) outlives a stop (`make clean-data`).
        self.database_dir = self.run_dir / "postgres"
        #: The members' metrics ports (JMX exporter): default their cluster ports + 12000.
        self.member_metrics_base_port = (
            member_base_port + MEMBER_METRICS_PORT_OFFSET
            if member_metrics_base_port is None
            else member_metrics_base_port
        )
        #: More JVM options for every member (``-Dhazelcast.…`` properties, say), last.
        self.member_options = tuple(member_options)
        self.log_dir = self.run_dir / "logs"
        self.pid_dir = self.run_dir / "pids"

    # ---- bookkeeping ---------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def _group_path(self, name: str) -> Path:
        """The part's process group, kept beside its pid: a wait for a part that has
        exited already must still wait for the rest of its group."""
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

    def pid_of(self, name: str) -> int | None:
        """The live pid of a part this stack started, or None."""
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

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def _spawn(self, part: Part) -> int:
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

    def _stop_signal_of(self, name: str) -> int | None:
        try:
            fields = self._pid_path(name).read_text().split()
        except OSError:
            return None
        return int(fields[2]) if len(fields) > 2 else None

    def _raise_if_dead(self, names: Sequence[str], when: str = "during start-up") -> None:
        for name in names:
            if self.pid_of(name) is None:
                raise StackError(
                    f"{name} exited {when}; last lines of {self.log_path(name)}:\n"
                    + self.log_tail(name)
                )

    def _tails(self, names: Sequence[str]) -> str:
        return "".join(f"\n--- {name} ---\n" + self.log_tail(name) for name in names)

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
            lambda: self._raise_if_dead(parts, f"while waiting for {what}"),
            detail=lambda: self._tails(parts),
        )
        return time.monotonic() - started

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

    # ---- Hazelcast members ------------------------------------------------------------

    def member_name(self, index: int) -> str:
        return f"member-{index + 1}"

    def member_port(self, index: int) -> int:
        return self.member_base_port + index

    def member_metrics_port(self, index: int) -> int:
        return self.member_metrics_base_port + index

    def member_addresses(self, count: int) -> list[str]:
        return [f"{LOOPBACK}:{self.member_port(i)}" for i in range(count)]

    def member_part(self, index: int, count: int) -> Part:
        java = shutil.which("java")
        if java is None:
            raise StackError(
                "java is not installed: install OpenJDK 17 or later "
                "(apt-get install openjdk-17-jre-headless)"
            )
        for jar in (HAZELCAST_JAR, PROCESSOR_JAR, POSTGRES_JAR, JMX_EXPORTER_JAR):
            if not jar.is_file():
                raise StackError(f"{jar} is missing: run `make build` (Maven) first")
        # Hazelcast refuses a split-brain quorum below 2: a one-member cluster has none.
        quorum = self.registry_quorum or min(count, 2)
        properties = {
            "hazelcast.config": str(self.member_config),
            "ratelimit.cluster.name": self.cluster_name,
            "ratelimit.member.port": str(self.member_port(index)),
            "ratelimit.members": ",".join(self.member_addresses(count)),
            "ratelimit.interface": LOOPBACK,
            "ratelimit.registry.quorum": str(max(quorum, 2)),
            "ratelimit.registry.quorum.enabled": str(quorum >= 2).lower(),
            "ratelimit.cluster.min.size": str(count),
            "ratelimit.registry.store.enabled": str(self.registry_store).lower(),
            "ratelimit.registry.jdbc.url": self.jdbc_url(),
            "ratelimit.registry.jdbc.user": DATABASE_USER,
            # Trust authentication on loopback: the local database has no password.
            "ratelimit.registry.jdbc.password": "",
        }
        argv = [
            java,
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-Djava.net.preferIPv4Stack=true",
            f"-javaagent:{JMX_EXPORTER_JAR}="
            f"{LOOPBACK}:{self.member_metrics_port(index)}:{JMX_EXPORTER_CONFIG}",
            # Start-up speed: members list each other, so there is nothing to wait for.
            "-Dhazelcast.wait.seconds.before.join=1",
            # The internal APIs Hazelcast asks for on Java 17 (fewer copies, real metrics).
            "--add-modules=java.se",
            "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens=java.management/sun.management=ALL-UNNAMED",
            "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
            *(f"-D{key}={value}" for key, value in properties.items()),
            *self.member_options,
            "-cp",
            f"{HAZELCAST_JAR}:{PROCESSOR_JAR}:{POSTGRES_JAR}",
            "com.hazelcast.core.server.HazelcastMemberStarter",
        ]
        return Part(self.member_name(index), argv, self.member_port(index))

    def start_members(self, count: int = 3, deadline_seconds: float = 90.0) -> float:
        """Starts ``count`` members (those not running yet) and waits until all have joined
        one cluster. Returns the seconds it took. On failure stops what it started."""
        started_at = time.monotonic()
        names = [self.member_name(i) for i in range(count)]
        fresh = [n for n in names if self.pid_of(n) is None]
        try:
            for index in range(count):
                self._spawn(self.member_part(index, count))
            self.wait_for_members(count, deadline_seconds)
        except BaseException:
            self.stop(fresh)
            raise
        return time.monotonic() - started_at

    def start_cluster(self, count: int = 3, deadline_seconds: float = 90.0) -> float:
        """The registry's database when the store is on (the members load the registry from
        it), then ``count`` members. Returns the seconds it took."""
        started_at = time.monotonic()
        if self.registry_store:
            self.start_database(deadline_seconds)
        self.start_members(count, deadline_seconds)
        return time.monotonic() - started_at

    def start_member(self, index: int, count: int = 3, deadline_seconds: float = 90.0) -> None:
        """(Re)starts one member and waits until the cluster has ``count`` members again.

        A killed member's socket may outlive its process a moment, so the port is awaited
        first: binding it at once could fail with "address already in use"."""
        port = self.member_port(index)
        poll_until(lambda: port_is_free(port), deadline_seconds, f"port {port} to be free")
        self._spawn(self.member_part(index, count))
        self.wait_for_members(count, deadline_seconds)

    def wait_for_members(self, count: int, deadline_seconds: float = 90.0) -> None:
        """Waits until each of the first ``count`` members lists all of them, as its
        clients see it; fails at once if one exits, and at the deadline naming the members
        that have not joined, with their logs' tails."""
        names = [self.member_name(i) for i in range(count)]
        ports = [self.member_port(i) for i in range(count)]
        addresses = self.member_addresses(count)

        def alive() -> None:
            self._raise_if_dead(names)

        poll_until(
            lambda: all(port_accepts(p) for p in ports),
            deadline_seconds,
            f"members to listen on ports {ports}",
            alive,
        )
        expected = set(addresses)
        views = [MemberView(a, self.cluster_name, deadline_seconds) for a in addresses]
        try:
            poll_until(
                lambda: all(view.members() >= expected for view in views),
                deadline_seconds,
                f"{count} members to join cluster {self.cluster_name!r}",
                alive,
                interval=0.25,
                detail=lambda: self._not_joined(views),
            )
        finally:
            for view in views:
                view.close()

    def _not_joined(self, views: Sequence[MemberView]) -> str:
        """Who has not joined: those missing from the largest view any member has (none
        answering: all of them), else those whose own view still lacks someone."""
        expected = {view.address for view in views}
        seen = [view.members() for view in views]
        missing = expected - max(seen, key=len)
        if not missing:
            lagging = zip(views, seen, strict=True)
            missing = {view.address for view, members in lagging if not members >= expected}
        names = [self.member_name(i) for i, v in enumerate(views) if v.address in missing]
        return f"; not joined: {', '.join(sorted(missing))}" + self._tails(names)

    # ---- PostgreSQL, the registry's durable copy -----------------------------------------

    DATABASE = "postgres"

    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{LOOPBACK}:{self.database_port}/{DATABASE_NAME}"

    def database_part(self) -> Part:
        """The PostgreSQL server on loopback TCP only (no Unix socket), as an unprivileged
        user; its data folder must exist (:meth:`start_database` creates it)."""
        bin_dir = postgres_bin_dir()
        argv = [
            *run_unprivileged(),
            str(bin_dir / "postgres"),
            "-D",
            str(self.database_dir / "data"),
            "-p",
            str(self.database_port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=100",
        ]
        return Part(
            self.DATABASE,
            argv,
            self.database_port,
            ready_check=lambda: database_ready(self.database_port),
            stop_signal=signal.SIGINT,
        )

    def start_database(self, deadline_seconds: float = 60.0) -> float:
        """Creates the data folder on first start (``initdb``, trust authentication on
        loopback, role ``ratelimit``), starts the server, waits until it accepts
        connections and creates the ``ratelimit`` database when missing. The members
        create their table in it. Returns the seconds it took."""
        started_at = time.monotonic()
        data = self.database_dir / "data"
        if not (data / "PG_VERSION").is_file():
            self._initdb(data)
        self.start_parts([self.database_part()], deadline_seconds)
        exists = self.sql("SELECT 1 FROM pg_database WHERE datname = 'ratelimit'", "postgres")
        if exists.strip() != "1":
            self.sql(f"CREATE DATABASE {DATABASE_NAME}", "postgres")
        return time.monotonic() - started_at

    def stop_database(self) -> None:
        """Stops PostgreSQL (fast shutdown: open sessions are ended); the data stays."""
        self.stop([self.DATABASE])

    def remove_database_data(self) -> None:
        """Deletes the registry's durable copy; refuses while the server runs."""
        if self.pid_of(self.DATABASE) is not None:
            raise StackError("PostgreSQL is running: stop the stack first (make down)")
        shutil.rmtree(self.database_dir, ignore_errors=True)

    def sql(self, statement: str, database: str = DATABASE_NAME) -> str:
        """Runs one statement with ``psql`` and returns its unaligned output."""
        psql = postgres_bin_dir() / "psql"
        argv = [
            str(psql),
            "-h",
            LOOPBACK,
            "-p",
            str(self.database_port),
            "-U",
            DATABASE_USER,
            "-d",
            database,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise StackError(f"psql {statement!r} failed: {done.stderr.strip()}")
        return done.stdout

    def _initdb(self, data: Path) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(data, ignore_errors=True)
        self.database_dir.mkdir(parents=True, exist_ok=True)
        owner = unprivileged_owner()
        if owner is not None:
            os.chown(self.database_dir, *owner)
            let_traverse(self.database_dir.parent, owner[0])
        argv = [
            *run_unprivileged(),
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            DATABASE_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        with open(self.log_path("initdb"), "wb") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd="/", check=False)
        if done.returncode != 0:
            raise StackError(
                f"initdb failed; last lines of {self.log_path('initdb')}:\n"
                + self.log_tail("initdb")
            )

    # ---- API replicas, nginx, Prometheus, the demo app -----------------------------------

    def replica_name(self, index: int) -> str:
        return f"api-{index + 1}"

    def replica_port(self, index: int) -> int:
        return self.api_base_port + index

    def replica_part(self, index: int, env: Mapping[str, str]) -> Part:
        """Replica ``index`` of the topology behind nginx."""
        return self.api_part(self.replica_name(index), self.replica_port(index), env)

    def api_part(
        self, name: str, port: int, env: Mapping[str, str], isolated: bool = False
    ) -> Part:
        """``python -m api`` on ``port``, on this stack's members unless ``env`` names
        others. ``isolated``: no ``RATELIMIT_*`` (nor metrics folder) from the caller's
        environment, so ``env`` is the whole configuration (the tests' replicas)."""
        settings = {
            "RATELIMIT_HAZELCAST_MEMBERS": ",".join(self.member_addresses(self.members)),
            "RATELIMIT_HAZELCAST_CLUSTER_NAME": self.cluster_name,
            **env,
            "RATELIMIT_HOST": LOOPBACK,
            "RATELIMIT_PORT": str(port),
        }
        unset = API_ENV_PREFIXES if isolated else ()
        return Part(name, [sys.executable, "-m", "api"], port, settings, "/ready", unset)

    def start_replicas(
        self, count: int = 3, env: Mapping[str, str] | None = None, deadline_seconds: float = 60
    ) -> None:
        """Starts ``count`` API replicas on consecutive ports and waits for their /ready."""
        self.start_parts([self.replica_part(i, env or {}) for i in range(count)], deadline_seconds)

    def demo_app_part(self) -> Part:
        """A plain static web app, the "any upstream" that gateway mode protects."""
        root = self.run_dir / "demo-app"
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text('{"message": "hello from the protected app"}\n')
        argv = [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            LOOPBACK,
            "--directory",
            str(root),
            str(self.demo_app_port),
        ]
        return Part("demo-app", argv, self.demo_app_port, ready_path="/")

    def nginx_part(self, replicas: int, gateway_ports: Sequence[int] | None = None) -> Part:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise StackError(
                "nginx is not installed: run `make up` as root, or apt-get install nginx"
            )
        folder = self.run_dir / "nginx"
        (folder / "temp").mkdir(parents=True, exist_ok=True)
        upstreams = " ".join(
            f"server {LOOPBACK}:{self.replica_port(i)} {NGINX_REPLICA_CHECK};"
            for i in range(replicas)
        )
        gateway = " ".join(
            f"server {LOOPBACK}:{port};" for port in (gateway_ports or [self.demo_app_port])
        )
        config = render(
            NGINX_TEMPLATE.read_text(),
            {
                "NGINX_LISTEN": f"{LOOPBACK}:{self.nginx_port}",
                "NGINX_TEMP_DIR": str(folder / "temp"),
                "NGINX_ACCESS_LOG": str(self.log_dir / "nginx-access.log"),
                "RATELIMIT_UPSTREAMS": upstreams,
                "GATEWAY_UPSTREAMS": gateway,
            },
        )
        (folder / "nginx.conf").write_text(config)
        argv = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"]
        return Part("nginx", argv, self.nginx_port, ready_path="/nginx-health")

    def prometheus_part(self, replicas: int) -> Part:
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            raise StackError("prometheus is not installed: apt-get install prometheus")
        folder = self.run_dir / "prometheus"
        (folder / "targets").mkdir(parents=True, exist_ok=True)
        for source in ("prometheus.yml", "rules.yml"):
            shutil.copy(PROMETHEUS_DIR / source, folder / source)
        targets = [
            {
                "targets": [f"{LOOPBACK}:{self.replica_port(i)}" for i in range(replicas)],
                "labels": {"stack": "local"},
            }
        ]
        (folder / "targets" / "api.json").write_text(json.dumps(targets, indent=2))
        members = [
            {
                "targets": [
                    f"{LOOPBACK}:{self.member_metrics_port(i)}" for i in range(self.members)
                ],
                "labels": {"stack": "local"},
            }
        ]
        (folder / "targets" / "members.json").write_text(json.dumps(members, indent=2))
        argv = [
            prometheus,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.prometheus_port}",
            "--storage.tsdb.retention.time=1d",
        ]
        return Part("prometheus", argv, self.prometheus_port, ready_path="/-/ready")

    def http_probes(self, replicas: int = 3) -> dict[str, tuple[int, str]]:
        """Port and readiness path of each HTTP part, without writing anything."""
        probes = {self.replica_name(i): (self.replica_port(i), "/ready") for i in range(replicas)}
        probes["demo-app"] = (self.demo_app_port, "/")
        probes["nginx"] = (self.nginx_port, "/nginx-health")
        probes["prometheus"] = (self.prometheus_port, "/-/ready")
        return probes

    def start_parts(
        self, parts: Sequence[Part], deadline_seconds: float = 60, wait: bool = True
    ) -> None:
        """Spawns the parts not running yet and, with ``wait``, waits until each is ready
        (without: a part that may never be, such as a replica whose cluster is down); on
        failure, stops the ones it started."""
        fresh = [p.name for p in parts if self.pid_of(p.name) is None]
        try:
            for part in parts:
                self._spawn(part)
            for part in parts if wait else ():
                poll_until(
                    lambda part=part: part_is_ready(part),  # type: ignore[misc]
                    deadline_seconds,
                    f"{part.name} to be ready on port {part.port}",
                    lambda part=part: self._raise_if_dead([part.name]),  # type: ignore[misc]
                    detail=lambda part=part: self._tails([part.name]),  # type: ignore[misc]
                )
        except BaseException:
            self.stop(fresh)
            raise

    # ---- all together -------------------------------------------------------------------

    def status(self) -> list[tuple[str, int | None]]:
        """Every part with a pid file, and its live pid (None: it died)."""
        names = sorted(p.stem for p in self.pid_dir.glob("*.pid")) if self.pid_dir.is_dir() else []
        return [(name, self.pid_of(name)) for name in names]


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


def render(template: str, values: Mapping[str, str]) -> str:
    """Replaces ``${NAME}`` for the names given and leaves every other ``$`` alone, as the
    nginx image's envsubst step does with the variables it is given."""
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


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
