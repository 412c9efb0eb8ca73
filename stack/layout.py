"""Where a stack's parts listen: one frozen value holding every port, so a second stack
beside the first (the tests', the benchmarks', a test's own cluster) is one derivation of
it rather than seven hand-offset numbers that must agree with each other.

Everything listens on loopback. `make up` uses :attr:`Layout.DEFAULT`, the ports of
``docker-compose.yml`` and the README; the tests and the benchmarks use
:meth:`Layout.at` their base port, and a stack of a test's own sits a fixed distance
above the session's (:meth:`Layout.shifted`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

#: The checkout the parts run from (their working folder, and the default run folder's parent).
ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"

#: A member's metrics port (JMX exporter) is its cluster port plus this (5701 → 17701).
MEMBER_METRICS_OFFSET = 12000
#: In a layout :meth:`Layout.at` a base, the HTTP parts and the database sit this far
#: above the first member, 10 apart: replicas, nginx, Prometheus, demo app, PostgreSQL,
#: the replicas' gRPC ports, Envoy and Envoy's admin.
HTTP_OFFSET = 15000


@dataclasses.dataclass(frozen=True)
class Layout:
    """Every port of one stack. Members and replicas take consecutive ports from their
    first one (member ``i`` on ``member_port + i``, replica ``i``'s gRPC service on
    ``grpc_port + i``)."""

    #: The first member's cluster port.
    member_port: int
    #: The first member's metrics port (Prometheus's JMX exporter).
    member_metrics_port: int
    #: The first API replica's port.
    api_port: int
    nginx_port: int
    prometheus_port: int
    demo_app_port: int
    database_port: int
    #: The first API replica's gRPC port (Envoy's rate limit service and gRPC health).
    grpc_port: int
    #: Envoy's listener, in front of the demo app with the rate limit filter.
    envoy_port: int
    envoy_admin_port: int

    DEFAULT: ClassVar[Layout]

    @classmethod
    def at(cls, base: int) -> Layout:
        """Members from ``base`` (metrics 12000 above), the HTTP parts and PostgreSQL
        15000 above it: base 5801 gives replicas from 20801, nginx 20811, Prometheus
        20821, the demo app 20831, PostgreSQL 20841, the replicas' gRPC ports from 20851,
        Envoy 20861 and its admin 20871."""
        http = base + HTTP_OFFSET
        return cls(
            member_port=base,
            member_metrics_port=base + MEMBER_METRICS_OFFSET,
            api_port=http,
            nginx_port=http + 10,
            prometheus_port=http + 20,
            demo_app_port=http + 30,
            database_port=http + 40,
            grpc_port=http + 50,
            envoy_port=http + 60,
            envoy_admin_port=http + 70,
        )

    def shifted(self, by: int, *, database_port: int | None = None) -> Layout:
        """Every port ``by`` higher: a stack beside this one. ``database_port``: the
        PostgreSQL it uses instead (this one's, to share it)."""
        moved = {field.name: getattr(self, field.name) + by for field in dataclasses.fields(self)}
        if database_port is not None:
            moved["database_port"] = database_port
        return Layout(**moved)

    def member(self, index: int) -> int:
        return self.member_port + index

    def member_metrics(self, index: int) -> int:
        return self.member_metrics_port + index

    def replica(self, index: int) -> int:
        return self.api_port + index

    def replica_grpc(self, index: int) -> int:
        return self.grpc_port + index


#: `make up`'s ports, the same as docker-compose.yml's.
Layout.DEFAULT = Layout(
    member_port=5701,
    member_metrics_port=5701 + MEMBER_METRICS_OFFSET,
    api_port=8081,
    nginx_port=9999,
    prometheus_port=9090,
    demo_app_port=8090,
    database_port=5432,
    grpc_port=8281,
    envoy_port=10000,
    envoy_admin_port=9901,
)
