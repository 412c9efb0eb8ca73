"""Envoy's gRPC rate limit service, called directly on a real replica (the default
strategy; tests/integration/test_refund.py gives back admissions on every strategy):
exact under concurrency, a request denied by one descriptor counted by none of the others
(the refund path, not only the deny cache's), health, and configuration reloads that keep
the counts of unchanged rules and reject invalid files."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from rls import bridge
from stack import LOOPBACK
from tests.cluster import DEFAULT_STRATEGY
from tests.integration.conftest import RUN_ID, Replica, Replicas

Response = rls_pb2.RateLimitResponse
#: Hour-long windows: upstream's units are clock-aligned, and a test's calls that
#: straddled a window's edge would legitimately count afresh (with minutes, a reload test
#: crossing a minute's edge once saw its earlier hits gone).
CONFIG = """
domain: grpc
descriptors:
  - key: ip
    rate_limit: {name: per_ip, unit: hour, requests_per_unit: 10}
  - key: slow
    rate_limit: {name: slow, unit: hour, requests_per_unit: 1, x_algorithm: gcra}
  - key: user
    rate_limit: {name: per_user, unit: hour, requests_per_unit: 2}
"""


class GrpcReplica:
    """A replica serving the rate limit service on ``port``, its configuration in
    ``config_dir`` (a test may rewrite it)."""

    def key(self, name: str) -> str:
        """A descriptor value no other test, strategy or run uses (the strategies share
        the session's counters map)."""
        return f"{name}-{self.strategy}-{RUN_ID}"

    def __init__(self, replica: Replica, port: int, config_dir: Path, strategy: str) -> None:
        self.replica = replica
        self.strategy = strategy
        self.port = port
        self.config_dir = config_dir

    def call(self, *requests: rls_pb2.RateLimitRequest) -> list[rls_pb2.RateLimitResponse]:
        """Every request at once on one channel, answers in order."""

        async def run() -> list[rls_pb2.RateLimitResponse]:
            async with grpc.aio.insecure_channel(f"{LOOPBACK}:{self.port}") as channel:
                stub = rls_pb2_grpc.RateLimitServiceStub(channel)
                calls = [stub.ShouldRateLimit(r, timeout=30) for r in requests]
                return list(await asyncio.gather(*calls))

        return asyncio.run(run())

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a counter's samples matching ``labels`` on the replica's /metrics."""
        text = self.replica.get("/metrics").text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total


@pytest.fixture(scope="module", params=[DEFAULT_STRATEGY])
def grpc_api(
    request: pytest.FixtureRequest, replicas: Replicas, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrpcReplica]:
    """One replica with the rate limit service on, reloading every 0.2 s."""
    strategy = str(request.param)
    config_dir = tmp_path_factory.mktemp(f"rls-{strategy}")
    (config_dir / "grpc.yaml").write_text(textwrap.dedent(CONFIG))
    port = replicas.reserve_port()
    replica = replicas.start(
        f"rls-{strategy}",
        strategy=strategy,
        grpc_port=port,
        rls_config_dir=str(config_dir),
        rls_reload_seconds=0.2,
    )
    yield GrpcReplica(replica, port, config_dir, strategy)
    replicas.stack.stop([replica.part_name])
    shutil.rmtree(config_dir, ignore_errors=True)


def ask(*descriptors: tuple[tuple[str, str], ...], hits: int = 0) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(
        domain="grpc",
        hits_addend=hits,
        descriptors=[
            ratelimit_pb2.RateLimitDescriptor(
                entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in d]
            )
            for d in descriptors
        ],
    )


def test_a_flood_on_one_key_admits_exactly_its_limit(grpc_api: GrpcReplica) -> None:
    """60 concurrent calls on a key limited to 10 per hour: exactly 10 OK."""
    ip = grpc_api.key("flood")
    answers = grpc_api.call(*(ask((("ip", ip),)) for _ in range(60)))
    codes = [a.overall_code for a in answers]
    assert codes.count(Response.OK) == 10
    assert codes.count(Response.OVER_LIMIT) == 50


def test_a_request_denied_by_one_descriptor_is_counted_by_none(grpc_api: GrpcReplica) -> None:
    """A GCRA key (never in the deny cache) denies at decision time, three times: the IP
    descriptor decided beside it is given back each time, so afterwards it has counted
    only the one admitted request."""
    ip, slow = grpc_api.key("refund-ip"), grpc_api.key("refund-slow")
    first = grpc_api.call(ask((("ip", ip),), (("slow", slow),)))[0]
    assert first.overall_code == Response.OK
    before = grpc_api.metric("ratelimit_refunds_total", outcome="applied")
    for _ in range(3):
        answer = grpc_api.call(ask((("ip", ip),), (("slow", slow),)))[0]
        assert answer.overall_code == Response.OVER_LIMIT
        assert [s.code for s in answer.statuses] == [Response.OK, Response.OVER_LIMIT]
    grpc_api.replica.wait_for(
        lambda: grpc_api.metric("ratelimit_refunds_total", outcome="applied") >= before + 3,
        10,
        "three refunds applied",
    )
    alone = grpc_api.call(ask((("ip", ip),)))[0]
    assert alone.statuses[0].limit_remaining == 10 - 2


def test_hits_addend_counts_that_many(grpc_api: GrpcReplica) -> None:
    """hits_addend 4 on a limit of 10 leaves 6; 7 more hits are over the limit."""
    ip = grpc_api.key("hits")
    assert grpc_api.call(ask((("ip", ip),), hits=4))[0].statuses[0].limit_remaining == 6
    assert grpc_api.call(ask((("ip", ip),), hits=7))[0].overall_code == Response.OVER_LIMIT


def test_health_is_serving(grpc_api: GrpcReplica) -> None:
    """A connected replica with a configuration reports SERVING for the service and
    for the server as a whole."""

    async def check(service: str) -> Any:
        async with grpc.aio.insecure_channel(f"{LOOPBACK}:{grpc_api.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service)
            return (await stub.Check(request, timeout=10)).status

    for service in ("", "envoy.service.ratelimit.v3.RateLimitService"):
        assert asyncio.run(check(service)) == health_pb2.HealthCheckResponse.SERVING


def post_protobuf(grpc_api: GrpcReplica, path: str, body: bytes, **headers: str) -> httpx.Response:
    """One POST to the replica's HTTP port, as Envoy's gRPC-to-HTTP/1.1 bridge sends it."""
    headers = {"content-type": bridge.CONTENT_TYPE, **headers}
    return httpx.post(f"{grpc_api.replica.url}{path}", content=body, headers=headers, timeout=30)


def test_the_bridge_route_decides_as_the_grpc_method(grpc_api: GrpcReplica) -> None:
    """The HTTP/1.1 route counts on the same keys as the gRPC method: alternating the two
    on a key limited to 10, exactly 10 of 14 are OK, and the route's answer is a protobuf
    RateLimitResponse with the statuses and headers of the gRPC one."""
    ip = grpc_api.key("bridge")
    codes = []
    for turn in range(14):
        request = ask((("ip", ip),))
        if turn % 2:
            codes.append(grpc_api.call(request)[0].overall_code)
            continue
        answer = post_protobuf(grpc_api, bridge.SHOULD_RATE_LIMIT_PATH, request.SerializeToString())
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == bridge.CONTENT_TYPE
        decoded = Response.FromString(answer.content)
        assert len(decoded.statuses) == 1
        assert decoded.statuses[0].current_limit.name == "per_ip"
        assert {h.key for h in decoded.response_headers_to_add} >= {"RateLimit-Policy"}
        codes.append(decoded.overall_code)
    assert codes.count(Response.OK) == 10
    assert codes[10:] == [Response.OVER_LIMIT] * 4


def test_the_bridge_route_refuses_what_the_grpc_method_refuses(grpc_api: GrpcReplica) -> None:
    """A body that is no RateLimitRequest, and one without a domain, are 400 with the
    reason in grpc-message; health answers SERVING for the server and the service, 404
    for another service; both routes are in the OpenAPI document, as protobuf."""
    path = bridge.SHOULD_RATE_LIMIT_PATH
    garbage = post_protobuf(grpc_api, path, b"\xff\xff\xff")
    assert garbage.status_code == 400
    assert "not a RateLimitRequest" in garbage.headers["grpc-message"]
    no_domain = rls_pb2.RateLimitRequest(descriptors=ask((("ip", "x"),)).descriptors)
    refused = post_protobuf(grpc_api, path, no_domain.SerializeToString())
    assert refused.status_code == 400
    assert "domain" in refused.headers["grpc-message"]
    for service in ("", "envoy.service.ratelimit.v3.RateLimitService"):
        body = health_pb2.HealthCheckRequest(service=service).SerializeToString()
        answer = post_protobuf(grpc_api, bridge.HEALTH_PATH, body)
        assert answer.status_code == 200
        status = health_pb2.HealthCheckResponse.FromString(answer.content).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    unknown = health_pb2.HealthCheckRequest(service="nope").SerializeToString()
    assert post_protobuf(grpc_api, bridge.HEALTH_PATH, unknown).status_code == 404
    document = grpc_api.replica.get("/docs/openapi.json").json()
    for route in (bridge.SHOULD_RATE_LIMIT_PATH, bridge.HEALTH_PATH):
        operation = document["paths"][route]["post"]
        assert bridge.CONTENT_TYPE in operation["requestBody"]["content"]
        assert {"200", "400", "503"} <= set(operation["responses"])


def test_a_reload_keeps_the_counts_of_a_changed_limit_and_rejects_invalid_files(
    grpc_api: GrpcReplica,
) -> None:
    """per_user's limit raised from 2 to 4 (same name, algorithm, window): the two hits
    already counted stay counted, so two more pass and the fifth is denied. Then an
    invalid file is rejected and counted, and the limit of 4 stays in force."""
    user = grpc_api.key("reload")
    path = grpc_api.config_dir / "grpc.yaml"
    codes = [a.overall_code for a in grpc_api.call(*(ask((("user", user),)) for _ in range(3)))]
    assert sorted(codes) == [Response.OK, Response.OK, Response.OVER_LIMIT]

    loaded = grpc_api.metric("ratelimit_rls_config_loads_total", outcome="loaded")
    path.write_text(textwrap.dedent(CONFIG).replace("requests_per_unit: 2", "requests_per_unit: 4"))
    grpc_api.replica.wait_for(
        lambda: grpc_api.metric("ratelimit_rls_config_loads_total", outcome="loaded") > loaded,
        10,
        "the changed configuration loaded",
    )
    after = [grpc_api.call(ask((("user", user),)))[0] for _ in range(3)]
    assert [a.overall_code for a in after] == [Response.OK, Response.OK, Response.OVER_LIMIT]
    assert after[0].statuses[0].current_limit.requests_per_unit == 4

    rejected = grpc_api.metric("ratelimit_rls_config_loads_total", outcome="rejected")
    path.write_text(textwrap.dedent(CONFIG).replace("unit: hour", "unit: fortnight"))
    grpc_api.replica.wait_for(
        lambda: grpc_api.metric("ratelimit_rls_config_loads_total", outcome="rejected") > rejected,
        10,
        "the invalid file rejected",
    )
    still = grpc_api.call(ask((("user", grpc_api.key("reload-2")),)))[0]
    assert still.statuses[0].current_limit.requests_per_unit == 4
