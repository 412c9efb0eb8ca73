"""The Hazelcast members: how one is started (``java``, ``hazelcast/hazelcast.xml``, the
entry processor's jar, the JDBC driver, the metrics agent) and how the stack knows they
have formed one cluster.

Whether the members have formed one cluster is asked of the members themselves, through
a Hazelcast client on each, rather than read from their logs: the logs' format is not an
interface, and a member's view of the cluster is.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from hazelcast.client import HazelcastClient
from hazelcast.config import ReconnectMode

from stack.errors import StackError
from stack.layout import LOOPBACK, ROOT, Layout
from stack.postgres import DATABASE_USER
from stack.process import Part, Processes, poll_until, port_accepts, port_is_free

HAZELCAST_DIR = ROOT / "hazelcast"
HAZELCAST_JAR = HAZELCAST_DIR / "target" / "lib" / "hazelcast.jar"
PROCESSOR_JAR = HAZELCAST_DIR / "target" / "ratelimit-processor.jar"
#: Prometheus's JMX exporter, run by each member as a Java agent (its /metrics).
JMX_EXPORTER_JAR = HAZELCAST_DIR / "target" / "lib" / "jmx_prometheus_javaagent.jar"
JMX_EXPORTER_CONFIG = HAZELCAST_DIR / "jmx-exporter.yml"
#: The registry MapStore's JDBC driver, copied beside the member jar by the Maven build.
POSTGRES_JAR = HAZELCAST_DIR / "target" / "lib" / "postgresql.jar"
MEMBER_CONFIG = HAZELCAST_DIR / "hazelcast.xml"


@dataclasses.dataclass(frozen=True)
class MemberSettings:
    """How a stack's members are configured, beyond their ports and cluster name."""

    #: How many members the stack has (the replicas and Prometheus are given all of them).
    count: int = 3
    config: Path = MEMBER_CONFIG
    #: The registry's split-brain quorum; None: min(members started, 2).
    registry_quorum: int | None = None
    #: False: members keep the registry in memory only (to measure what the store costs).
    registry_store: bool = True
    #: More JVM options for every member (``-Dhazelcast.…`` properties, say), last.
    jvm_options: tuple[str, ...] = ()


#: Three members with the registry's store on, as `make up` starts them.
DEFAULT_MEMBER_SETTINGS = MemberSettings()


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


class Members:
    """The members of one cluster: named ``member-1``.., on the layout's member ports,
    writing the registry through to the PostgreSQL at ``jdbc_url``."""

    def __init__(
        self,
        processes: Processes,
        layout: Layout,
        cluster_name: str,
        settings: MemberSettings,
        jdbc_url: str,
    ) -> None:
        self.processes = processes
        self.layout = layout
        self.cluster_name = cluster_name
        self.settings = settings
        self.jdbc_url = jdbc_url

    def name(self, index: int) -> str:
        return f"member-{index + 1}"

    def addresses(self, count: int) -> list[str]:
        return [f"{LOOPBACK}:{self.layout.member(i)}" for i in range(count)]

    def part(self, index: int, count: int) -> Part:
        """Member ``index`` of a cluster of ``count``; fails at once, naming what to
        install or build, when java or a jar is missing."""
        java = shutil.which("java")
        if java is None:
            raise StackError(
                "java is not installed: install OpenJDK 17 or later "
                "(apt-get install openjdk-17-jre-headless)"
            )
        for jar in (HAZELCAST_JAR, PROCESSOR_JAR, POSTGRES_JAR, JMX_EXPORTER_JAR):
            if not jar.is_file():
                raise StackError(f"{jar} is missing: run `make build` (Maven) first")
        argv = [
            java,
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-Djava.net.preferIPv4Stack=true",
            f"-javaagent:{JMX_EXPORTER_JAR}="
            f"{LOOPBACK}:{self.layout.member_metrics(index)}:{JMX_EXPORTER_CONFIG}",
            # Start-up speed: members list each other, so there is nothing to wait for.
            "-Dhazelcast.wait.seconds.before.join=1",
            # The internal APIs Hazelcast asks for on Java 17 (fewer copies, real metrics).
            "--add-modules=java.se",
            "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens=java.management/sun.management=ALL-UNNAMED",
            "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
            *(f"-D{key}={value}" for key, value in self._properties(index, count).items()),
            *self.settings.jvm_options,
            "-cp",
            f"{HAZELCAST_JAR}:{PROCESSOR_JAR}:{POSTGRES_JAR}",
            "com.hazelcast.core.server.HazelcastMemberStarter",
        ]
        return Part(self.name(index), argv, self.layout.member(index))

    def _properties(self, index: int, count: int) -> dict[str, str]:
        """The system properties ``hazelcast.xml`` reads (``${ratelimit.…}``), and where
        it is."""
        # Hazelcast refuses a split-brain quorum below 2: a one-member cluster has none.
        quorum = self.settings.registry_quorum or min(count, 2)
        return {
            "hazelcast.config": str(self.settings.config),
            "ratelimit.cluster.name": self.cluster_name,
            "ratelimit.member.port": str(self.layout.member(index)),
            "ratelimit.members": ",".join(self.addresses(count)),
            "ratelimit.interface": LOOPBACK,
            "ratelimit.registry.quorum": str(max(quorum, 2)),
            "ratelimit.registry.quorum.enabled": str(quorum >= 2).lower(),
            "ratelimit.cluster.min.size": str(count),
            "ratelimit.registry.store.enabled": str(self.settings.registry_store).lower(),
            "ratelimit.registry.jdbc.url": self.jdbc_url,
            "ratelimit.registry.jdbc.user": DATABASE_USER,
            # Trust authentication on loopback: the local database has no password.
            "ratelimit.registry.jdbc.password": "",
        }

    def start(self, count: int = 3, deadline_seconds: float = 90.0) -> float:
        """Starts ``count`` members (those not running yet) and waits until all have joined
        one cluster. Returns the seconds it took. On failure stops what it started."""
        started_at = time.monotonic()
        names = [self.name(i) for i in range(count)]
        fresh = [n for n in names if self.processes.pid_of(n) is None]
        try:
            for index in range(count):
                self.processes.spawn(self.part(index, count))
            self.wait(count, deadline_seconds)
        except BaseException:
            self.processes.stop(fresh)
            raise
        return time.monotonic() - started_at

    def restart(self, index: int, count: int = 3, deadline_seconds: float = 90.0) -> None:
        """(Re)starts one member and waits until the cluster has ``count`` members again.

        A killed member's socket may outlive its process a moment, so the port is awaited
        first: binding it at once could fail with "address already in use"."""
        port = self.layout.member(index)
        poll_until(lambda: port_is_free(port), deadline_seconds, f"port {port} to be free")
        self.processes.spawn(self.part(index, count))
        self.wait(count, deadline_seconds)

    def wait(self, count: int, deadline_seconds: float = 90.0) -> None:
        """Waits until each of the first ``count`` members lists all of them, as its
        clients see it; fails at once if one exits, and at the deadline naming the members
        that have not joined, with their logs' tails."""
        names = [self.name(i) for i in range(count)]
        ports = [self.layout.member(i) for i in range(count)]
        addresses = self.addresses(count)

        def alive() -> None:
            self.processes.raise_if_dead(names)

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
        names = [self.name(i) for i, v in enumerate(views) if v.address in missing]
        return f"; not joined: {', '.join(sorted(missing))}" + self.processes.tails(names)
