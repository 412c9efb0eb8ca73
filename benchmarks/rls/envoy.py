"""Envoy's side of the benchmark: its three instances (the filter on our replicas, the
filter off, the filter on the peer), the fast upstream behind them, and what Envoy's
admin interface says about a run (its rate limit counters and the RLS call's latency).

Every instance is the stack's :meth:`stack.Stack.envoy_part`, rendered from the one
template (``envoyproxy/envoy.yaml``): the peer's only points its ``ratelimit`` cluster at
the peer (``rls_ports``), and the filter-off one drops the filter (``rate_limit_filter``).

Why a static upstream instead of the stack's demo app: that one is Python's
``http.server``, HTTP/1.0 (a connection per request); wrk at 32 connections through
Envoy got 700 requests/s from it, with 503s, so the filter-off baseline measured the
demo app, not Envoy, and every ratio would be close to 1 whatever the filter cost. An
nginx answering a fixed 200 on the demo app's port keeps Envoy's upstream out of the way.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stack import LOOPBACK, Part, Stack, StackError

__all__ = [
    "COUNTERS",
    "PATIENT_TIMEOUT_SECONDS",
    "EnvoyInstance",
    "EnvoyReading",
    "envoy_instances",
    "static_upstream_part",
]

#: The filter's counters (``cluster.<route's cluster>.ratelimit.*``) and the requests
#: that reached the upstream.
COUNTERS = {
    "ok": "cluster.demo_app.ratelimit.ok",
    "over_limit": "cluster.demo_app.ratelimit.over_limit",
    "error": "cluster.demo_app.ratelimit.error",
    "failure_mode_allowed": "cluster.demo_app.ratelimit.failure_mode_allowed",
    "upstream_requests": "cluster.demo_app.upstream_rq_total",
}
#: The RLS call's latency, as Envoy measures it (whole milliseconds).
RLS_HISTOGRAM = "cluster.ratelimit.upstream_rq_time"
#: Envoy merges its histograms into the admin view on its stats flush (every 5 s).
HISTOGRAM_FLUSH_DEADLINE_SECONDS = 12.0

STATIC_UPSTREAM_CONFIG = """
worker_processes 1;
pid {folder}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 100000;
    server {{
        listen {address};
        default_type application/json;
        location / {{ return 200 '{{"message": "hello from the protected app"}}\\n'; }}
    }}
}}
"""


def static_upstream_part(stack: Stack) -> Part:
    """nginx answering 200 to everything on the demo app's port (see the module's doc)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise StackError("nginx is not installed: apt-get install nginx-light")
    folder = stack.run_dir / "rls-upstream"
    folder.mkdir(parents=True, exist_ok=True)
    port = stack.layout.demo_app_port
    config = folder / "nginx.conf"
    config.write_text(STATIC_UPSTREAM_CONFIG.format(folder=folder, address=f"{LOOPBACK}:{port}"))
    argv = [nginx, "-p", str(folder), "-c", str(config), "-g", "daemon off;"]
    return Part("rls-upstream", argv, port, ready_path="/")


@dataclasses.dataclass(frozen=True)
class EnvoyInstance:
    """One Envoy of the benchmark: its part name, listener and admin ports."""

    name: str
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.admin_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def read(self) -> EnvoyReading:
        """The counters and the RLS histogram's detailed buckets now."""
        stats = self._get("/stats?format=json&histogram_buckets=detailed&filter=^cluster\\.")
        counters: dict[str, int] = {}
        buckets: dict[float, int] = {}
        wanted = {name: key for key, name in COUNTERS.items()}
        for item in stats["stats"]:
            if "name" in item and item["name"] in wanted:
                counters[wanted[item["name"]]] = int(item["value"])
            for detail in (item.get("histograms") or {}).get("details", []):
                if detail["name"] == RLS_HISTOGRAM:
                    for bucket in detail["totals"]:
                        buckets[float(bucket["lower_bound"])] = int(bucket["count"])
        return EnvoyReading({k: counters.get(k, 0) for k in COUNTERS}, buckets)

    def read_after(self, before: EnvoyReading, wait_for_histogram: bool) -> EnvoyReading:
        """The reading after a run. With ``wait_for_histogram``: polled (up to Envoy's
        next stats flush) until the histogram holds a sample per RLS answer of the run,
        since Envoy merges histograms into the admin view only when it flushes."""
        deadline = time.monotonic() + HISTOGRAM_FLUSH_DEADLINE_SECONDS
        while True:
            after = self.read()
            delta = after.minus(before)
            answered = delta.counters["ok"] + delta.counters["over_limit"]
            if not wait_for_histogram or delta.samples >= answered:
                return after
            if time.monotonic() >= deadline:
                return after
            time.sleep(0.25)


@dataclasses.dataclass(frozen=True)
class EnvoyReading:
    """Envoy's counters (by :data:`COUNTERS`' short names) and the RLS call histogram's
    buckets (lower bound in ms: count), cumulative since Envoy started."""

    counters: Mapping[str, int]
    buckets: Mapping[float, int]

    @property
    def samples(self) -> int:
        return sum(self.buckets.values())

    def minus(self, before: EnvoyReading) -> EnvoyReading:
        """What happened between ``before`` and this reading."""
        return EnvoyReading(
            {k: v - before.counters.get(k, 0) for k, v in self.counters.items()},
            {
                b: n - before.buckets.get(b, 0)
                for b, n in self.buckets.items()
                if n - before.buckets.get(b, 0) > 0
            },
        )

    def percentile_ms(self, fraction: float) -> float | None:
        """The bucket (lower bound, ms) holding that fraction of the samples; None when
        there are none. Envoy records whole milliseconds: 0 means under 1 ms."""
        total = self.samples
        if not total:
            return None
        rank = max(1, round(fraction * total))
        seen = 0
        for bound in sorted(self.buckets):
            seen += self.buckets[bound]
            if seen >= rank:
                return bound
        return max(self.buckets)


#: The Envoy the floods are also sent through, beside Envoy's default 20 ms: long enough
#: for every answer to come back, so that what reaches the upstream is the service's own
#: admission, with nothing let through unasked.
PATIENT_TIMEOUT_SECONDS = 1.0
#: Each role's Envoy: name, ports above the stack's Envoy, what its filter asks, timeout.
ROLES = {
    "ours": ("envoy", 0),
    "off": ("envoy-nofilter", 1),
    "peer": ("envoy-peer", 2),
    "ours_1s": ("envoy-1s", 3),
    "peer_1s": ("envoy-peer-1s", 4),
}


def envoy_instances(
    stack: Stack, peer_grpc_port: int | None
) -> tuple[list[Part], dict[str, EnvoyInstance]]:
    """The Envoy parts to start and each instance by role: ``ours`` (the filter asking our
    replicas), ``off`` (the same Envoy without the filter), ``ours_1s`` (the filter with a
    timeout of :data:`PATIENT_TIMEOUT_SECONDS`) and, with a peer, ``peer`` and ``peer_1s``
    (the filter asking it); all of one template, each on ports above the stack's Envoy."""
    layout = stack.layout
    parts: list[Part] = []
    instances: dict[str, EnvoyInstance] = {}
    for role, (name, above) in ROLES.items():
        if role.startswith("peer") and peer_grpc_port is None:
            continue
        instance = EnvoyInstance(name, layout.envoy_port + above, layout.envoy_admin_port + above)
        instances[role] = instance
        options: dict[str, Any] = {}
        if role == "off":
            options["rate_limit_filter"] = False
        if role.startswith("peer"):
            options["rls_ports"] = [peer_grpc_port]
        if role.endswith("_1s"):
            options["timeout_seconds"] = PATIENT_TIMEOUT_SECONDS
        parts.append(
            stack.envoy_part(
                name=name, port=instance.port, admin_port=instance.admin_port, **options
            )
        )
    return parts, instances
