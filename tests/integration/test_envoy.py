"""Through a real Envoy: its rate limit filter asks the topology's replicas (gRPC) about
every request to the demo app, with the rules of ``tests/rls/envoy/config.yaml`` (limits
of 100 a day per address and per user, 5 for a user's /checkout).

Counts are read twice: from the client's answers and from Envoy's own stats
(``cluster.demo_app.upstream_rq_*`` for what reached the app, ``cluster.demo_app.ratelimit.*``
for the filter's outcomes), as differences across each test. Every test sends addresses
(X-Forwarded-For, which Envoy trusts one hop of) and user ids of its own, so no test sees
another's counts. Floods use aiohttp on 127.0.0.1, bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import http_sfv
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stack import LOOPBACK, Stack, poll_until, port_is_free
from tests.conftest import Envoy, Topology

FLOOD_REQUESTS = 1500
FLOOD_CONNECTIONS = 300
#: The limits of tests/rls/envoy/config.yaml.
PER_IP = 100
PER_USER = 100
CHECKOUT = 5
DAY = 86400
#: Envoy's default wait for the service (the template's default, 20 ms), and how much
#: later than it an answer may come on this shared two-core machine: Envoy's own work,
#: the event loops of client and Envoy, scheduling.
ENVOY_DEFAULT_TIMEOUT = 0.02
ANSWER_BOUND_SECONDS = ENVOY_DEFAULT_TIMEOUT + 0.5
#: The sustained load: requests per second, for how long, each from its own address,
#: and how long its Envoy waits for the service. Not Envoy's 20 ms, which is about the
#: service's p99 on a quiet shared two-core machine running the whole stack (3 members,
#: 3 replicas, Envoy and the load): a run at 20 ms saw 3 calls in 300 late, let through
#: by the failure mode. Nor 250 ms: with other work on the machine (load average 16)
#: p50 was 98 ms, p99 324 ms, and 10 in 300 were late. The test asserts that no call
#: fails; the figures it prints say how close to Envoy's 20 ms the service runs.
LOAD_RATE = 100
LOAD_SECONDS = 3.0
LOAD_TIMEOUT_SECONDS = 1.0
#: The flood under a configuration change: 1,500 requests over 3.75 s, so that the
#: replicas (polling every second) reload while it runs.
REWRITE_FLOOD_RATE = 400
#: How long a configuration change may take to be in force: the replicas poll the folder
#: every second (RATELIMIT_RLS_RELOAD_SECONDS), plus a generous margin.
RELOAD_DEADLINE_SECONDS = 15.0
FILTER_STATS = ("ok", "over_limit", "error", "failure_mode_allowed")
#: Envoy's histogram of the service's answer times, milliseconds.
RLS_CALL_TIME = "cluster.ratelimit.upstream_rq_time"


# ---- Envoy's stats ----------------------------------------------------------------------


def envoy_stats(admin_url: str) -> dict[str, int]:
    """Every counter and gauge of an Envoy, from its admin ``/stats``."""
    response = httpx.get(f"{admin_url}/stats", params={"format": "json"}, timeout=10)
    response.raise_for_status()
    return {item["name"]: int(item["value"]) for item in response.json()["stats"] if "name" in item}


def histogram_quantiles(admin_url: str, name: str) -> dict[str, float | None]:
    """p50 and p99 (ms) of one of an Envoy's histograms over its whole life, as Envoy
    computes them at each flush (every second, envoyproxy/envoy.yaml)."""
    response = httpx.get(
        f"{admin_url}/stats", params={"format": "json", "filter": f"^{name}$"}, timeout=10
    )
    response.raise_for_status()
    for item in response.json()["stats"]:
        histograms = item.get("histograms")
        if not histograms:
            continue
        quantiles = histograms["supported_quantiles"]
        for computed in histograms["computed_quantiles"]:
            if computed["name"] == name:
                values = [value["cumulative"] for value in computed["values"]]
                found = dict(zip(quantiles, values, strict=True))
                return {"p50": found[50], "p99": found[99]}
    return {"p50": None, "p99": None}


@dataclass
class StatsDelta:
    """Envoy's counters since this was made: ``delta(name)``."""

    admin_url: str
    before: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.before = envoy_stats(self.admin_url)

    def delta(self, name: str) -> int:
        return envoy_stats(self.admin_url).get(name, 0) - self.before.get(name, 0)

    def filter(self) -> dict[str, int]:
        """The rate limit filter's outcomes since then."""
        now = envoy_stats(self.admin_url)
        return {
            stat: now.get(f"cluster.demo_app.ratelimit.{stat}", 0)
            - self.before.get(f"cluster.demo_app.ratelimit.{stat}", 0)
            for stat in FILTER_STATS
        }


# ---- requests and answers -----------------------------------------------------------------


@dataclass
class Answers:
    """What a flood got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    #: Answers (429) missing RateLimit or RateLimit-Policy, or not Structured Fields.
    bad_headers: list[str] = field(default_factory=list)
    #: Names of the limits the 429s' RateLimit named.
    denied_by: Counter[str] = field(default_factory=Counter)
    policies: set[str] = field(default_factory=set)
    slowest: float = 0.0
    elapsed: float = 0.0


def parsed(value: str) -> list[tuple[Any, dict[str, Any]]]:
    """A header value as a Structured Fields list: each item's value and parameters."""
    items = http_sfv.List()
    items.parse(value.encode())
    return [(item.value, dict(item.params)) for item in items]


def check_denial(headers: Mapping[str, str], answers: Answers) -> None:
    """A 429's rate-limit headers: RateLimit names the limit that denied with r=0,
    RateLimit-Policy every limit, Retry-After a whole number of seconds."""
    try:
        (name, state), *_ = parsed(headers["RateLimit"])
        policies = parsed(headers["RateLimit-Policy"])
        assert state["r"] == 0 and state["t"] >= 1, state
        assert all({"q", "w"} <= set(params) for _, params in policies), policies
        assert int(headers["Retry-After"]) >= 1
    except (KeyError, ValueError, AssertionError) as error:
        answers.bad_headers.append(f"{error!r}: {dict(headers)}")
        return
    answers.denied_by[str(name)] += 1
    answers.policies.add(headers["RateLimit-Policy"])


async def flood(
    url: str,
    headers_of: Sequence[Mapping[str, str]],
    connections: int = FLOOD_CONNECTIONS,
    path: str = "/",
) -> Answers:
    """One GET ``path`` per item of ``headers_of`` (its headers), from ``connections``
    connections at once."""
    answers = Answers()
    pending = iter(headers_of)
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for headers in pending:
                started = time.monotonic()
                async with session.get(f"{url}{path}", headers=headers) as response:
                    await response.read()
                    answers.statuses[response.status] += 1
                    if response.status == 429:
                        check_denial(response.headers, answers)
                answers.slowest = max(answers.slowest, time.monotonic() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        answers.elapsed = time.monotonic() - started
    return answers


def fresh_addresses(count: int) -> list[str]:
    """``count`` addresses no other test of this run sends (a random /8-ish block)."""
    base = random.randrange(1 << 30)
    return [
        f"{100 + (base >> 22) % 100}.{(base >> 14) & 255}.{(i // 250) & 255}.{i % 250 + 1}"
        for i in range(count)
    ]


def fresh_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def clear_of_day_edge(margin_seconds: float = 30.0) -> None:
    """The rules' windows are clock-aligned days: a flood must not straddle midnight UTC,
    where a second window would legitimately admit more. Waits the edge out if near."""
    if DAY - time.time() % DAY < margin_seconds:
        poll_until(lambda: time.time() % DAY < DAY / 2, margin_seconds + 5, "midnight UTC")


def remaining(response: httpx.Response) -> tuple[str, int]:
    """The name and ``r`` of the limit an answer's RateLimit reports."""
    (name, state), *_ = parsed(response.headers["RateLimit"])
    return str(name), int(state["r"])


# ---- Envoys of a test's own ------------------------------------------------------------


@contextlib.contextmanager
def own_envoy(
    stack: Stack, name: str, offset: int, rls_ports: Sequence[int] | None, **options: Any
) -> Iterator[Envoy]:
    """An Envoy beside the session's, ``offset`` (1-9) above its ports, asking
    ``rls_ports`` (None: the topology's replicas); stopped at the end."""
    port = stack.layout.envoy_port + offset
    admin_port = stack.layout.envoy_admin_port + offset
    part = stack.envoy_part(
        Topology.REPLICAS,
        name=name,
        port=port,
        admin_port=admin_port,
        rls_ports=rls_ports,
        **options,
    )
    stack.start_parts([part], 30)
    try:
        yield Envoy(name, f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{admin_port}")
    finally:
        stack.stop([name])


@contextlib.contextmanager
def silent_listeners(ports: Sequence[int]) -> Iterator[None]:
    """Sockets that accept connections (the kernel completes the handshake) and never
    answer: a replica frozen, or one whose process hangs."""
    sockets = []
    try:
        for port in ports:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((LOOPBACK, port))
            listener.listen(128)
            sockets.append(listener)
        yield
    finally:
        for listener in sockets:
            listener.close()


# ---- the replicas' configuration --------------------------------------------------------


def replica_samples(topology: Topology, name: str) -> Counter[str]:
    """A counter of the topology's replicas (their /metrics, summed) by its labels."""
    found: Counter[str] = Counter()
    for index in range(Topology.REPLICAS):
        port = topology.stack.replica_port(index)
        text = httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    found[",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))] += int(
                        sample.value
                    )
    return found


def config_loads(topology: Topology, outcome: str) -> int:
    """Loads of the rules folder the topology's replicas made so far with ``outcome``,
    ``loaded`` or ``rejected`` (their /metrics, summed)."""
    total = 0
    for index in range(Topology.REPLICAS):
        port = topology.stack.replica_port(index)
        text = httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "ratelimit_rls_config_loads_total"
                    and sample.labels.get("outcome") == outcome
                ):
                    total += int(sample.value)
    return total


def write_atomically(path: Path, text: str) -> None:
    """As a deployment replaces a file: the new one whole, under its name at once."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


# ---- the tests --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _not_at_midnight() -> None:
    clear_of_day_edge()


def test_per_address_flood_admits_exactly_the_limit(envoy: Envoy) -> None:
    """1,500 requests from one address over 300 connections: exactly 100 reach the app (by
    the client and by Envoy's stats), every other answer is a 429 with the headers."""
    (ip,) = fresh_addresses(1)
    stats = StatsDelta(envoy.admin_url)
    answers = asyncio.run(flood(envoy.url, [{"X-Forwarded-For": ip}] * FLOOD_REQUESTS))
    assert answers.statuses == {200: PER_IP, 429: FLOOD_REQUESTS - PER_IP}, answers
    assert answers.bad_headers == []
    assert answers.denied_by == {"per_ip": FLOOD_REQUESTS - PER_IP}
    assert stats.delta("cluster.demo_app.upstream_rq_2xx") == PER_IP
    assert stats.delta("cluster.demo_app.upstream_rq_total") == PER_IP
    outcomes = stats.filter()
    assert outcomes == {
        "ok": PER_IP,
        "over_limit": FLOOD_REQUESTS - PER_IP,
        "error": 0,
        "failure_mode_allowed": 0,
    }
    print(f"\nper-address flood: {answers.elapsed:.2f}s, slowest {answers.slowest * 1000:.0f} ms")


def test_per_user_flood_admits_exactly_the_limit(envoy: Envoy) -> None:
    """1,500 requests of one x-user-id, each from another address, over 300 connections:
    exactly 100 reach the app, every other answer is a 429 naming per_user."""
    user = fresh_user()
    headers = [{"X-Forwarded-For": ip, "X-User-Id": user} for ip in fresh_addresses(1500)]
    stats = StatsDelta(envoy.admin_url)
    answers = asyncio.run(flood(envoy.url, headers))
    assert answers.statuses == {200: PER_USER, 429: FLOOD_REQUESTS - PER_USER}, answers
    assert answers.bad_headers == []
    assert answers.denied_by == {"per_user": FLOOD_REQUESTS - PER_USER}
    assert stats.delta("cluster.demo_app.upstream_rq_2xx") == PER_USER
    assert stats.filter()["ok"] == PER_USER
    assert stats.filter()["error"] == 0


def test_a_denial_by_one_descriptor_counts_in_none_of_the_others(
    envoy: Envoy, topology: Topology
) -> None:
    """Twenty /checkout requests of one user from one address (three descriptors each):
    5 pass, 15 are denied by checkout; the address and the user then have 100 - 5 - 1
    left, as if the denied ones never came."""
    ip, other_ip = fresh_addresses(2)
    user = fresh_user()
    headers = {"X-Forwarded-For": ip, "X-User-Id": user}
    refunds = replica_samples(topology, "ratelimit_refunds_total")
    answers = asyncio.run(flood(envoy.url, [headers] * 20, connections=4, path="/checkout"))
    # The demo app has no /checkout: what passed the filter is its 404.
    assert answers.statuses == {404: CHECKOUT, 429: 20 - CHECKOUT}, answers
    assert answers.denied_by == {"checkout": 20 - CHECKOUT}
    # A denied request's refunds run in the background (one cluster round trip): each
    # probe counts one more, so the k-th expects k fewer, until they are all in.
    try:
        assert_remaining_reaches(envoy, {"X-Forwarded-For": ip}, "per_ip", PER_IP - CHECKOUT)
        assert_remaining_reaches(
            envoy,
            {"X-Forwarded-For": other_ip, "X-User-Id": user},
            "per_user",
            PER_USER - CHECKOUT,
        )
    except AssertionError as error:
        now = replica_samples(topology, "ratelimit_refunds_total")
        raise AssertionError(
            f"{error}; the replicas' refunds by outcome: {now - refunds}"
        ) from None


def assert_remaining_reaches(
    envoy: Envoy, headers: Mapping[str, str], limit: str, before: int
) -> None:
    """Requests with ``headers`` until one's RateLimit shows ``limit`` with ``before``
    minus the probes so far remaining (within 5 s); fails with what it saw instead."""
    seen: list[tuple[str, int]] = []

    def probe() -> bool:
        response = httpx.get(f"{envoy.url}/", headers=headers, timeout=10)
        assert response.status_code == 200, response.headers
        seen.append(remaining(response))
        return seen[-1] == (limit, before - len(seen))

    try:
        poll_until(probe, 5, f"{limit} to show {before} - probes remaining", interval=0.2)
    except Exception as error:
        raise AssertionError(f"{limit}: expected {before} - probes, saw {seen}") from error


@pytest.mark.parametrize("replicas", ["stopped", "hung"])
@pytest.mark.parametrize("deny", [True, False], ids=["deny", "allow"])
def test_failure_mode_with_no_replica_answering(
    topology: Topology, deny: bool, replicas: str
) -> None:
    """An Envoy whose every replica is stopped (nothing listens) or hung (connections
    accepted, never answered), at Envoy's default 20 ms: failure_mode_deny answers 500,
    allow lets the request through (200), each answer within 20 ms + 0.5 s."""
    stack = topology.stack
    offset = 1 + 2 * [True, False].index(deny) + ["stopped", "hung"].index(replicas)
    # Ports of the stack's range no part uses (between the gRPC ports and Envoy's).
    dead_ports = [stack.layout.grpc_port + 5 + i for i in range(Topology.REPLICAS)]
    assert all(port_is_free(port) for port in dead_ports)
    listeners = silent_listeners(dead_ports) if replicas == "hung" else contextlib.nullcontext()
    with (
        listeners,
        own_envoy(
            stack,
            f"envoy-{replicas}-{'deny' if deny else 'allow'}",
            offset,
            dead_ports,
            failure_mode_deny=deny,
        ) as envoy,
    ):
        stats = StatsDelta(envoy.admin_url)
        timings = []
        statuses: Counter[int] = Counter()
        with httpx.Client(timeout=10) as client:
            for _ in range(20):
                started = time.monotonic()
                response = client.get(f"{envoy.url}/")
                timings.append(time.monotonic() - started)
                statuses[response.status_code] += 1
        assert statuses == ({500: 20} if deny else {200: 20})
        assert max(timings) < ANSWER_BOUND_SECONDS, timings
        outcomes = stats.filter()
        assert outcomes["error"] == 20
        assert outcomes["failure_mode_allowed"] == (0 if deny else 20)
        assert stats.delta("cluster.demo_app.upstream_rq_total") == (0 if deny else 20)
        print(
            f"\n{replicas} replicas, {'deny' if deny else 'allow'}: {dict(statuses)}, "
            f"slowest {max(timings) * 1000:.1f} ms"
        )


def test_sustained_load_no_call_fails(topology: Topology) -> None:
    """100 requests a second for 3 s, each from its own address, through an Envoy waiting
    1 s: no error, none let through by failure mode, no timeout, every request
    answered by the service; prints how many it could not decide within Envoy's deadline
    (429 "too busy") and p50/p99 of its answers as Envoy measured them."""
    stack = topology.stack
    with own_envoy(stack, "envoy-load", 9, None, timeout_seconds=LOAD_TIMEOUT_SECONDS) as envoy:
        stats = StatsDelta(envoy.admin_url)
        addresses = fresh_addresses(int(LOAD_RATE * LOAD_SECONDS))
        answers = asyncio.run(steady(envoy.url, [{"X-Forwarded-For": ip} for ip in addresses]))
        statuses = answers.statuses
        outcomes = stats.filter()
        timeouts = stats.delta("cluster.ratelimit.upstream_rq_timeout")
        calls = stats.delta("cluster.ratelimit.upstream_rq_total")
        poll_until(
            lambda: None not in histogram_quantiles(envoy.admin_url, RLS_CALL_TIME).values(),
            10,
            "Envoy's histogram of the service's answers",
        )
        quantiles = histogram_quantiles(envoy.admin_url, RLS_CALL_TIME)
        print(
            f"\nsustained load {LOAD_RATE}/s for {LOAD_SECONDS:.0f}s, timeout "
            f"{LOAD_TIMEOUT_SECONDS * 1000:.0f} ms: "
            f"answers {dict(statuses)}, filter {outcomes}, timeouts {timeouts}; "
            f"RLS call ({calls} calls) p50 {quantiles['p50']} ms, p99 {quantiles['p99']} ms"
        )
        assert outcomes["error"] == 0
        assert outcomes["failure_mode_allowed"] == 0
        assert timeouts == 0
        assert outcomes["ok"] + outcomes["over_limit"] == len(addresses)
        # Fresh addresses are never over their limit: a 429 here is the service's answer
        # for a decision it could not make within Envoy's deadline (r=0;t=1, like the
        # HTTP routes' "too busy"), reported above, not asserted: it depends on the load
        # of the machine.
        assert set(statuses) <= {200, 429}
        assert statuses[429] == outcomes["over_limit"]


async def steady(
    url: str,
    headers_of: Sequence[Mapping[str, str]],
    rate: float = LOAD_RATE,
    connections: int = 64,
) -> Answers:
    """One GET / per item of ``headers_of``, started at a fixed ``rate`` per second
    whatever the answers' latency (an open loop), on up to ``connections`` connections."""
    answers = Answers()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one(headers: Mapping[str, str]) -> None:
            async with session.get(f"{url}/", headers=headers) as response:
                await response.read()
                answers.statuses[response.status] += 1
                if response.status == 429:
                    check_denial(response.headers, answers)

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for index, headers in enumerate(headers_of):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the load's pace, not a wait for a server
            tasks.append(asyncio.create_task(one(headers)))
        await asyncio.gather(*tasks)
        answers.elapsed = loop.time() - start
    return answers


def test_configuration_reload_under_a_flood(envoy: Envoy, topology: Topology) -> None:
    """While 1,500 requests of one user come in at 400 a second, the rules file is
    rewritten with a new rule and every replica reloads it: the user still gets exactly
    100, nothing errs, and the new rule holds. An invalid file is then rejected by every
    replica and the rules before it stay in force."""
    config = topology.rls_config_dir / "config.yaml"
    original = config.read_text()
    reloaded_rule = (
        "\n  - key: path\n    value: /reloaded\n    descriptors:\n      - key: user_id\n"
        "        rate_limit: {name: reloaded, unit: day, requests_per_unit: 2}\n"
    )
    user = fresh_user()
    headers = [{"X-Forwarded-For": ip, "X-User-Id": user} for ip in fresh_addresses(1500)]
    stats = StatsDelta(envoy.admin_url)

    def reloaded_rule_holds() -> bool:
        probe = {"X-Forwarded-For": fresh_addresses(1)[0], "X-User-Id": fresh_user()}
        codes = [
            httpx.get(f"{envoy.url}/reloaded", headers=probe, timeout=10).status_code
            for _ in range(3)
        ]
        return codes == [404, 404, 429]

    loaded = config_loads(topology, "loaded")

    def all_loaded() -> float:
        """When every replica has loaded the changed folder (each once per change)."""
        poll_until(
            lambda: config_loads(topology, "loaded") >= loaded + Topology.REPLICAS,
            RELOAD_DEADLINE_SECONDS,
            "every replica to load the new rule",
            interval=0.2,
        )
        return time.monotonic()

    async def flood_while_rewriting() -> tuple[Answers, float, float]:
        running = asyncio.create_task(
            steady(envoy.url, headers, REWRITE_FLOOD_RATE, FLOOD_CONNECTIONS)
        )
        await asyncio.sleep(0.5)  # the limit reached, most of the flood still to come
        write_atomically(config, original + reloaded_rule)
        reloaded = asyncio.create_task(asyncio.to_thread(all_loaded))
        answers = await running
        ended = time.monotonic()
        return answers, await reloaded, ended

    try:
        answers, reloaded_at, flood_ended_at = asyncio.run(flood_while_rewriting())
        assert answers.statuses == {200: PER_USER, 429: FLOOD_REQUESTS - PER_USER}, answers
        assert answers.bad_headers == []
        assert answers.denied_by == {"per_user": FLOOD_REQUESTS - PER_USER}
        assert reloaded_at < flood_ended_at, "the replicas reloaded after the flood, not under it"
        # Every replica has the new rule before the next change (one still on the old
        # file would keep the old rules through an invalid one).
        assert reloaded_rule_holds()
        assert stats.filter()["error"] == 0

        rejected = config_loads(topology, "rejected")
        write_atomically(config, original + reloaded_rule + "  - key: [not, a, key\n")
        poll_until(
            lambda: config_loads(topology, "rejected") >= rejected + Topology.REPLICAS,
            RELOAD_DEADLINE_SECONDS,
            "every replica to reject the invalid file",
        )
        assert reloaded_rule_holds(), "the rules before the invalid file are no longer in force"
        denied = httpx.get(
            f"{envoy.url}/", headers={"X-Forwarded-For": fresh_addresses(1)[0], "X-User-Id": user}
        )
        assert denied.status_code == 429
        assert remaining(denied) == ("per_user", 0)
        assert stats.filter()["error"] == 0
    finally:
        write_atomically(config, original)
