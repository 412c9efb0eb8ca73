"""What the rate limit service costs Envoy, and how it compares with the service it
replaces (``python -m benchmarks --only rls``, or alone: ``python -m benchmarks.rls``).

Three questions, measured side by side in one run on the benchmark's own stack, each as
a ratio of two loads of the same round (medians over rounds, each round's own beside it,
since on a shared 2-core machine absolute rates move with the load):

1. **gRPC decisions per replica** (:meth:`.suite.RlsRun.decisions`): ``ShouldRateLimit``
   with one descriptor and with three, straight at one replica's gRPC port (ghz, built
   with ``go install``: :mod:`.grpcload`), against ``GET /decide`` on the same replica
   (wrk) for a client of one limit and one of three, every limit too high to reach. The
   CPU of the replica and of the generator are kept beside each rate, so that a
   generator at its ceiling shows.
2. **Through Envoy** (:meth:`.suite.RlsRun.through_envoy`): wrk through the stack's
   Envoy (``envoyproxy/envoy.yaml``) with the rate limit filter asking our replicas,
   against the same Envoy without the filter, for one client and for ``--rls-ips``
   client IPs (each request the next one in ``X-Forwarded-For``, which Envoy's
   ``remote_address`` action reads); with Envoy's own view: its filter counters and the
   RLS call's p50/p99 (:mod:`.envoy`).
3. **The peer** (:mod:`.peer`): envoyproxy/ratelimit on Redis, with the same
   configuration file (``storefront.yaml``), behind the same Envoy template: the same
   throughput loads, ours over theirs, and a flood of 1,500 requests from 300
   connections on one key limited to 100 through each (:mod:`.flood`), its admissions
   against the exact 100 with Envoy's default 20 ms timeout (where a late answer lets
   the request through: ``failure_mode_allowed``).

Exactness: every throughput load must be answered 200/204 or OK (nothing there comes
near a limit), and our service must never answer OK to more than the flood's limit; a
miss marks the report FAILED. The peer's figures are figures, never findings.
``--smoke`` runs one short round without the peer (half a minute at most).

``--rls-config benchmarks/rls/unlimited/storefront.yaml`` runs the same loads on rules
with every limit lifted (``unlimited: true``): both services answer OK without deciding
or storing anything, so the filter's cost through Envoy is then that of a call alone,
the ceiling of any decision behind it (the floods are skipped: they need the default
rules' flood limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["CONFIG_FILE", "DOMAIN", "GRPC_LOADS", "STRATEGY"]

#: The rules both services read, unchanged (upstream's format, no extension).
CONFIG_FILE = Path(__file__).with_name("storefront.yaml")
DOMAIN = "storefront"
#: The replicas' strategy: the service's default.
STRATEGY: Final = "entry_processor"
#: The gRPC loads: each request's descriptors, on one key each (a client far under its
#: limits, as the end-to-end part's ``under`` scenario).
GRPC_LOADS: dict[str, list[dict[str, str]]] = {
    "grpc_1": [{"remote_address": "10.1.0.1"}],
    "grpc_3": [{"remote_address": "10.1.0.1"}, {"user_id": "bench-user"}, {"tenant": "bench"}],
}
