"""One local stack as a whole: its layout of ports, its run folder and its cluster name,
and the parts composed over them. ``Stack`` holds no logic of its own beyond the order
in which a cluster starts (its database, then its members); each method hands over to
the part that knows how (:mod:`stack.process`, :mod:`stack.members`,
:mod:`stack.postgres`, :mod:`stack.frontends`), so callers need one object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stack.frontends import ENVOY_RLS_TIMEOUT_SECONDS, Frontends
from stack.layout import ROOT, Layout
from stack.members import DEFAULT_MEMBER_SETTINGS, Members, MemberSettings
from stack.postgres import DATABASE_NAME, Postgres
from stack.process import Part, Processes


class Stack:
    """One stack: its ports, its cluster name and its run folder."""

    #: The database part's name (its pid file and log).
    DATABASE = Postgres.NAME

    def __init__(
        self,
        layout: Layout = Layout.DEFAULT,
        run_dir: Path = ROOT / ".run",
        cluster_name: str = "ratelimit",
        member_settings: MemberSettings = DEFAULT_MEMBER_SETTINGS,
    ) -> None:
        self.layout = layout
        self.cluster_name = cluster_name
        self.processes = Processes(run_dir)
        self.run_dir = self.processes.run_dir
        self.log_dir = self.processes.log_dir
        #: PostgreSQL's folder is ``postgres/`` under the run folder.
        self.database = Postgres(self.processes, layout.database_port, self.run_dir / "postgres")
        self.database_dir = self.database.folder
        self.cluster = Members(
            self.processes, layout, cluster_name, member_settings, self.database.jdbc_url()
        )
        self.frontends = Frontends(self.processes, layout, self.cluster)

    def beside(self, name: str, layout: Layout) -> Stack:
        """A stack of its own on ``layout`` (a test's cluster beside the session's): its
        run folder ``name`` under this one's (so `make down` finds it), its cluster name
        this one's with ``-name``, the same member settings."""
        return Stack(
            layout, self.run_dir / name, f"{self.cluster_name}-{name}", self.cluster.settings
        )

    @property
    def members(self) -> int:
        """How many members the stack has (its replicas and Prometheus know them all)."""
        return self.cluster.settings.count

    @property
    def nginx_port(self) -> int:
        """The entry point's port."""
        return self.layout.nginx_port

    # ---- processes -------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.processes.log_path(name)

    def log_tail(self, name: str, lines: int = 20) -> str:
        return self.processes.log_tail(name, lines)

    def pid_of(self, name: str) -> int | None:
        return self.processes.pid_of(name)

    def running(self) -> dict[str, int]:
        return self.processes.running()

    def status(self) -> list[tuple[str, int | None]]:
        return self.processes.status()

    def start_parts(
        self, parts: Sequence[Part], deadline_seconds: float = 60, wait: bool = True
    ) -> None:
        self.processes.start_parts(parts, deadline_seconds, wait)

    def wait_until(
        self,
        condition: Callable[[], bool],
        deadline_seconds: float,
        what: str,
        parts: Sequence[str] = (),
    ) -> float:
        return self.processes.wait_until(condition, deadline_seconds, what, parts)

    def stop(self, names: Sequence[str] | None = None, grace_seconds: float = 15.0) -> list[str]:
        return self.processes.stop(names, grace_seconds)

    def kill(self, name: str) -> None:
        self.processes.kill(name)

    def terminate(self, name: str) -> None:
        self.processes.terminate(name)

    def wait_for_exit(self, name: str, deadline_seconds: float) -> None:
        self.processes.wait_for_exit(name, deadline_seconds)

    # ---- the cluster: PostgreSQL and the members ---------------------------------------

    def start_cluster(self, count: int = 3, deadline_seconds: float = 90.0) -> float:
        """The registry's database when the store is on (the members load the registry from
        it), then ``count`` members. Returns the seconds it took."""
        started_at = time.monotonic()
        if self.cluster.settings.registry_store:
            self.database.start(deadline_seconds)
        self.cluster.start(count, deadline_seconds)
        return time.monotonic() - started_at

    def start_database(self, deadline_seconds: float = 60.0) -> float:
        return self.database.start(deadline_seconds)

    def stop_database(self) -> None:
        self.database.stop()

    def remove_database_data(self) -> None:
        self.database.remove_data()

    def sql(self, statement: str, database: str = DATABASE_NAME) -> str:
        return self.database.sql(statement, database)

    def member_name(self, index: int) -> str:
        return self.cluster.name(index)

    def member_metrics_port(self, index: int) -> int:
        return self.layout.member_metrics(index)

    def member_addresses(self, count: int) -> list[str]:
        return self.cluster.addresses(count)

    def member_part(self, index: int, count: int) -> Part:
        return self.cluster.part(index, count)

    def start_members(self, count: int = 3, deadline_seconds: float = 90.0) -> float:
        return self.cluster.start(count, deadline_seconds)

    def start_member(self, index: int, count: int = 3, deadline_seconds: float = 90.0) -> None:
        self.cluster.restart(index, count, deadline_seconds)

    def wait_for_members(self, count: int, deadline_seconds: float = 90.0) -> None:
        self.cluster.wait(count, deadline_seconds)

    # ---- replicas, nginx, Envoy, Prometheus, the demo app --------------------------------

    def replica_name(self, index: int) -> str:
        return self.frontends.replica_name(index)

    def replica_port(self, index: int) -> int:
        return self.layout.replica(index)

    def replica_part(self, index: int, env: Mapping[str, str]) -> Part:
        return self.frontends.replica_part(index, env)

    def replica_grpc_port(self, index: int) -> int:
        return self.layout.replica_grpc(index)

    def api_part(
        self,
        name: str,
        port: int,
        env: Mapping[str, str],
        isolated: bool = False,
        grpc_port: int = 0,
    ) -> Part:
        return self.frontends.api_part(name, port, env, isolated, grpc_port)

    def start_replicas(
        self, count: int = 3, env: Mapping[str, str] | None = None, deadline_seconds: float = 60
    ) -> None:
        self.frontends.start_replicas(count, env, deadline_seconds)

    def demo_app_part(self) -> Part:
        return self.frontends.demo_app_part()

    def nginx_part(self, replicas: int, gateway_ports: Sequence[int] | None = None) -> Part:
        return self.frontends.nginx_part(replicas, gateway_ports)

    def envoy_part(
        self,
        replicas: int = 3,
        *,
        name: str = "envoy",
        port: int | None = None,
        admin_port: int | None = None,
        rls_ports: Sequence[int] | None = None,
        failure_mode_deny: bool = False,
        timeout_seconds: float = ENVOY_RLS_TIMEOUT_SECONDS,
        rate_limit_filter: bool = True,
    ) -> Part:
        return self.frontends.envoy_part(
            replicas,
            name=name,
            port=port,
            admin_port=admin_port,
            rls_ports=rls_ports,
            failure_mode_deny=failure_mode_deny,
            timeout_seconds=timeout_seconds,
            rate_limit_filter=rate_limit_filter,
        )

    def prometheus_part(self, replicas: int) -> Part:
        return self.frontends.prometheus_part(replicas)

    def http_probes(self, replicas: int = 3) -> dict[str, tuple[int, str]]:
        return self.frontends.http_probes(replicas)
