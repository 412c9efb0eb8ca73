"""What the rate limit benchmark reads off the services it loads: CPU, wrk's answers,
gRPC health and answers, and the keys each service stored (ours from the cluster, the
peer's from Redis)."""

from __future__ import annotations

import asyncio
import resource
import shutil
import subprocess
from collections.abc import Sequence

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.inprocess import bench_settings
from benchmarks.load.wrk import WrkRun
from benchmarks.rls import CONFIG_FILE, DOMAIN, STRATEGY
from limiter import connect, create_strategy
from rls.config import load_directory
from rls.matching import match
from stack import LOOPBACK, Stack

__all__ = ["cpu", "grpc_serving", "our_keys", "redis_keys", "should_rate_limit", "wrk_problems"]


def cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def wrk_problems(seen: WrkRun, statuses: set[int]) -> list[str]:
    found = []
    if seen.socket_error_count:
        found.append(f"{seen.socket_error_count} socket errors")
    if set(seen.statuses) - statuses:
        found.append(f"statuses {seen.statuses}")
    return found


def grpc_serving(port: int) -> bool:
    """Whether the gRPC health service on ``port`` says SERVING."""
    try:
        with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(), timeout=1
            )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def should_rate_limit(port: int, descriptors: Sequence[dict[str, str]]) -> int:
    request = rls_pb2.RateLimitRequest(domain=DOMAIN)
    for descriptor in descriptors:
        entry = request.descriptors.add()
        for key, value in descriptor.items():
            entry.entries.add(key=key, value=value)
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        reply = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(request, timeout=10)
    return int(reply.overall_code)


def redis_keys(port: int, pattern: str) -> int | None:
    """How many keys of Redis on ``port`` match ``pattern`` (the peer's counters)."""
    cli = shutil.which("redis-cli")
    if cli is None:
        return None
    done = subprocess.run(
        [cli, "-h", LOOPBACK, "-p", str(port), "--scan", "--pattern", pattern],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return len(done.stdout.split()) if done.returncode == 0 else None


async def our_keys(stack: Stack, counters_map: str, ips: Sequence[str]) -> set[str]:
    """Those of ``ips`` with a count in the current window on our replicas' counters map:
    the distinct keys our service decided, read back with the service's own matching.
    (Only the current window: the rules' windows are clock hours, so the caller reads
    after each run, before an hour's edge can empty it.)"""
    settings = bench_settings(
        stack.member_addresses(3), stack.cluster_name, counters_map=counters_map
    )
    config = load_directory(CONFIG_FILE.parent)
    link = await connect(settings)
    counters = await link.get_map(counters_map)
    strategy = create_strategy(settings, counters, name=STRATEGY)
    gate = asyncio.Semaphore(64)

    async def stored(ip: str) -> bool:
        found = match(config, DOMAIN, [("remote_address", ip)])
        if found is None or found.policy is None:
            return False
        async with gate:
            states, _ = await strategy.stored_states(found.counter_key, found.policy)
        return any(state is not None for state in states)

    try:
        found = await asyncio.gather(*(stored(ip) for ip in ips))
        return {ip for ip, seen in zip(ips, found, strict=True) if seen}
    finally:
        await strategy.close()
        await link.close()
