"""The rate limit part as the suite (:mod:`benchmarks.__main__`) runs it: on the suite's
stack, from the command's options, into its report (see :mod:`benchmarks.rls`)."""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2

from benchmarks.clients import create_client, create_clients
from benchmarks.load.wrk import run_wrk
from benchmarks.policies import LIMIT, THREE_LIMITS, limits_body
from benchmarks.results import RlsFlood, RlsPart, RlsPeer, RlsRow
from benchmarks.rls import CONFIG_FILE, DOMAIN, GRPC_LOADS, STRATEGY
from benchmarks.rls.envoy import EnvoyInstance, envoy_instances, static_upstream_part
from benchmarks.rls.flood import FLOOD_LIMIT, flood, flood_ip
from benchmarks.rls.grpcload import (
    GhzMissing,
    ghz_binary,
    ghz_cached,
    rls_request,
    run_ghz,
    write_protoset,
)
from benchmarks.rls.peer import PeerMissing, PeerPorts, peer_binary, peer_parts, redis_server
from benchmarks.rls.probes import (
    cpu,
    grpc_serving,
    our_keys,
    redis_keys,
    should_rate_limit,
    wrk_problems,
)
from benchmarks.rls.rules import config_dir, replica_env, shown
from benchmarks.stack import ADMIN_TOKEN, REPLICAS
from benchmarks.stats import load_now
from benchmarks.tools.cpu import tree_cpu_seconds
from stack import LOOPBACK, Stack, StackError

__all__ = ["run_rls"]

COUNTERS_MAP = "ratelimit.counters.bench-rls"
#: The replica loaded directly (gRPC and ``/decide``): the first one.
REPLICA = 0
#: The unrecorded warm-up's runs are at most this long.
WARM_UP_SECONDS = 2
READY_DEADLINE_SECONDS = 60.0
#: The many-IP loads' addresses: 10.200.0.1 onwards, none of them a flood key.
IPS_PREFIX = "10.200"


def _ips(count: int) -> list[str]:
    return [f"{IPS_PREFIX}.{i // 256}.{i % 256}" for i in range(1, count + 1)]


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


class RlsRun:
    """One run of the part: what it started, and what it found."""

    def __init__(
        self,
        stack: Stack,
        args: argparse.Namespace,
        step: Callable[[str], None],
        running: tuple[str, str] | None = None,
    ):
        self.stack = stack
        self.args = args
        self.step = step
        #: Replicas already up with the rules (:func:`replica_env`): strategy, counters map.
        self.running = running
        self.counters_map = COUNTERS_MAP
        self.raw: dict[str, list[dict[str, Any]]] = {}
        #: Per Envoy, how far each wrk thread of its many-IP runs walked so far (where
        #: the next run starts).
        self.ips_walked: dict[str, int] = {}
        #: The IPs our service was seen to have counted, read after each many-IP run.
        self.ours_keys: set[str] = set()
        self.problems: list[str] = []
        self.started: list[str] = []
        self.peer: RlsPeer = {"ran": False, "reason": ""}
        self.peer_ports = PeerPorts.of(stack)
        self.protoset = write_protoset(stack.run_dir / "rls" / "rls.protoset")
        #: Replicas already running reload the rules from here within a second.
        self.config_dir = config_dir(stack, args.rls_config)

    # ---- start -------------------------------------------------------------------------

    def start(self) -> dict[str, EnvoyInstance]:
        """The replicas with the gRPC service and the benchmark's rules, the static
        upstream, the peer when asked and available, and the Envoys."""
        stack = self.stack
        started = time.monotonic()
        replicas = [stack.replica_name(i) for i in range(REPLICAS)]
        up = all(stack.pid_of(name) for name in replicas)
        if up and self.running is not None and self.running[0] == STRATEGY:
            # The suite's HTTP parts left them running with the default strategy and
            # these rules: a restart would only cost time (the rules' keys are apart
            # from every client's).
            self.counters_map = self.running[1]
        else:
            stack.stop(replicas)
            stack.start_replicas(
                REPLICAS,
                {
                    "RATELIMIT_STRATEGY": STRATEGY,
                    "RATELIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
                    "RATELIMIT_COUNTERS_MAP": COUNTERS_MAP,
                    "RATELIMIT_DEFAULT_WINDOW_ALIGNMENT": "first_request",
                    **replica_env(stack, self.args.rls_config),
                },
            )
        for index in range(REPLICAS):
            port = stack.layout.replica_grpc(index)
            stack.wait_until(
                lambda port=port: grpc_serving(port),  # type: ignore[misc]
                READY_DEADLINE_SECONDS,
                f"the gRPC service of {replicas[index]} on port {port}",
                [replicas[index]],
            )
        # The stack's demo app is too slow to stand behind Envoy here (benchmarks.rls.envoy).
        stack.stop(["demo-app"])
        self._start([static_upstream_part(stack)])
        peer_grpc = self._start_peer() if self.args.peer else None
        if not self.args.peer:
            self.peer["reason"] = (
                "left out of a smoke run (it needs Go and Redis, and minutes the first time)"
                if self.args.smoke
                else "not asked for (--no-peer)"
            )
        parts, instances = envoy_instances(stack, peer_grpc)
        self._start(parts)
        self.step(
            f"rls: replicas with the gRPC service, {', '.join(p.name for p in parts)} "
            f"and the upstream ready in {time.monotonic() - started:.1f} s"
        )
        return instances

    def _start(self, parts: Sequence[Any]) -> None:
        self.stack.start_parts(parts, READY_DEADLINE_SECONDS)
        self.started += [part.name for part in parts]

    def _start_peer(self) -> int | None:
        try:
            binary, redis = peer_binary(), redis_server()
            self._start(peer_parts(self.stack, self.config_dir / CONFIG_FILE.name, binary, redis))
        except (PeerMissing, StackError) as error:
            self.peer["reason"] = str(error)
            self.step(f"rls: the peer is skipped: {error}")
            return None
        self.peer = {"ran": True, "reason": f"envoyproxy/ratelimit ({binary}), {redis}"}
        return self.peer_ports.grpc

    def stop(self) -> None:
        self.stack.stop(self.started)

    # ---- checks ----------------------------------------------------------------------

    def check_answers(self) -> None:
        """One call of each gRPC load on each service must answer OK: a load that is
        denied or refused would measure something else."""
        targets = {"ours": self.stack.layout.replica_grpc(REPLICA)}
        if self.peer["ran"]:
            targets["peer"] = self.peer_ports.grpc
        for service, port in targets.items():
            for load, descriptors in GRPC_LOADS.items():
                code = should_rate_limit(port, descriptors)
                if code != rls_pb2.RateLimitResponse.OK:
                    name = rls_pb2.RateLimitResponse.Code.Name(code)
                    self.problems.append(f"{service} {load}: answered {name}, not OK")

    # ---- 1. decisions per replica -------------------------------------------------------

    def decisions(self, ghz: Path | None) -> None:
        """``/decide`` (a client of one limit, one of three) against ghz's gRPC loads on
        one replica, and the peer's gRPC, runs in alternating order per round."""
        stack = self.stack
        replica_url = f"http://{LOOPBACK}:{stack.replica_port(REPLICA)}"
        one = create_client(replica_url, LIMIT)
        three = asyncio.run(
            create_clients(replica_url, 1, LIMIT, limits=limits_body(THREE_LIMITS))
        )[0]
        loads: dict[str, Callable[[float], dict[str, Any]]] = {
            "http_decide_1": lambda s: self._wrk_direct(f"{replica_url}/decide", one, s),
            "http_decide_3": lambda s: self._wrk_direct(f"{replica_url}/decide", three, s),
        }
        if ghz is not None:
            ours = stack.layout.replica_grpc(REPLICA)
            for load, descriptors in GRPC_LOADS.items():
                loads[load] = lambda s, d=descriptors: self._ghz(
                    ghz, ours, d, s, stack.replica_name(REPLICA)
                )  # type: ignore[misc]
                if self.peer["ran"]:
                    loads[f"peer_{load}"] = lambda s, d=descriptors: self._ghz(
                        ghz, self.peer_ports.grpc, d, s, "rls-peer"
                    )  # type: ignore[misc]
        self._rounds(loads)

    def _wrk_direct(self, url: str, client_id: str, seconds: float) -> dict[str, Any]:
        pid = self.stack.pid_of(self.stack.replica_name(REPLICA))
        server_before = tree_cpu_seconds([pid]) if pid else 0.0
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        seen = run_wrk(url, self.args.rls_connections, seconds, headers={"X-Api-Id": client_id})
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = (tree_cpu_seconds([pid]) if pid else 0.0) - server_before
        found = wrk_problems(seen, {204})
        return {
            "per_second": seen.per_second,
            "p50_ms": seen.p50_ms,
            "p99_ms": seen.p99_ms,
            "server_cores": server / wall,
            "generator_cores": (cpu(after) - cpu(before)) / wall,
            "problems": found,
        }

    def _ghz(
        self, ghz: Path, port: int, descriptors: Sequence[dict[str, str]], seconds: float, part: str
    ) -> dict[str, Any]:
        pid = self.stack.pid_of(part)
        server_before = tree_cpu_seconds([pid]) if pid else 0.0
        started = time.monotonic()
        seen = run_ghz(
            ghz,
            self.protoset,
            f"{LOOPBACK}:{port}",
            rls_request(DOMAIN, descriptors),
            concurrency=self.args.rls_connections,
            seconds=seconds,
        )
        wall = time.monotonic() - started
        server = (tree_cpu_seconds([pid]) if pid else 0.0) - server_before
        return {
            "per_second": seen.per_second,
            "p50_ms": seen.p50_ms,
            "p99_ms": seen.p99_ms,
            "server_cores": server / wall,
            "generator_cores": seen.generator_cores,
            "problems": seen.problems(self.args.rls_connections),
        }

    # ---- 2 and 3a. through Envoy ----------------------------------------------------------

    def through_envoy(self, envoys: dict[str, EnvoyInstance]) -> None:
        """wrk through each Envoy, one client (no X-Forwarded-For: keyed 127.0.0.1) and
        ``--rls-ips`` IPs (each request the next IP of its wrk thread's rotation), in
        alternating order per round. Each Envoy's many-IP runs go on where its last one
        stopped, so that over the runs every IP is sent; the keys each service stored
        afterwards say how many it decided (:func:`run_rls`)."""
        ips = _ips(self.args.rls_ips)
        loads: dict[str, Callable[[float], dict[str, Any]]] = {}
        for shape in ("one", "ips"):
            for role, envoy in envoys.items():
                if role.endswith("_1s"):
                    continue  # the floods' alone
                loads[f"{role}_{shape}"] = lambda s, e=envoy, r=role, sh=shape: self._wrk_envoy(  # type: ignore[misc]
                    e, r, ips if sh == "ips" else None, s
                )
        self._rounds(loads)

    def _wrk_envoy(
        self, envoy: EnvoyInstance, role: str, ips: list[str] | None, seconds: float
    ) -> dict[str, Any]:
        before = envoy.read()
        offset = self.ips_walked.get(role, 0) % len(ips) if ips else 0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        seen = run_wrk(
            f"{envoy.url}/",
            self.args.rls_connections,
            seconds,
            # wrk's two threads start half the IPs apart: a run of up to len(ips)
            # requests sends each IP at most once, and runs go on from each other.
            # (One thread would keep them apart for good, but on a loaded machine it got
            # half the rate of two even with the filter off: a flattered ratio.)
            rotate=("X-Forwarded-For", ips[offset:] + ips[:offset]) if ips else None,
        )
        wall = time.monotonic() - started
        generator = cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - cpu(usage)
        if ips:
            # Each of the two threads walked about half the requests from its start:
            # the next run's threads go on from there, each in its half.
            self.ips_walked[role] = self.ips_walked.get(role, 0) + seen.requests // 2
            if role == "ours":
                self.ours_keys |= asyncio.run(our_keys(self.stack, self.counters_map, ips))
        delta = envoy.read_after(
            before, wait_for_histogram=role != "off" and not self.args.smoke
        ).minus(before)
        # Figures, not findings, with the filter on: requests Envoy let through unasked
        # (no answer within its timeout: failure_mode_allowed) and 429s under the limit
        # (our service denies, as contended, what it cannot decide by the call's
        # deadline: Envoy's timeout less a margin). The row's Envoy counters keep both.
        found = wrk_problems(seen, {200} if role == "off" else {200, 429})
        result: dict[str, Any] = {
            "per_second": seen.per_second,
            "p50_ms": seen.p50_ms,
            "p99_ms": seen.p99_ms,
            "problems": found,
            "envoy": dict(delta.counters),
            "rls_p50_ms": delta.percentile_ms(0.5),
            "rls_p99_ms": delta.percentile_ms(0.99),
            "generator_cores": generator / wall,
            "requests": seen.requests,
        }
        if ips:
            result["keys_sent"] = min(seen.requests, len(ips))
        return result

    # ---- 3b. the flood -------------------------------------------------------------------

    def floods_apply(self) -> bool:
        """Whether the rules are the default ones, whose flood rule the floods count on."""
        return bool(Path(self.args.rls_config).resolve() == CONFIG_FILE.resolve())

    def floods(self, envoys: dict[str, EnvoyInstance]) -> dict[str, list[RlsFlood]]:
        """``--rls-floods`` floods per service and Envoy timeout (the default 20 ms and
        1 s), alternating, each on a fresh key."""
        kinds = ("ours", "ours_bridge", "peer", "ours_1s", "peer_1s")
        found: dict[str, list[RlsFlood]] = {kind: [] for kind in kinds if kind in envoys}
        index = 0
        if not self.floods_apply():
            self.step(f"rls: floods skipped: {self.args.rls_config} is not the default rules")
            return {}
        for round_ in range(self.args.rls_floods):
            roles = list(found) if round_ % 2 == 0 else list(reversed(found))
            for role in roles:
                envoy = envoys[role]
                ip = flood_ip(index)
                index += 1
                before = envoy.read()
                seen = flood(envoy.url, ip)
                delta = envoy.read().minus(before)
                result: RlsFlood = {
                    "ip": ip,
                    "admitted": delta.counters["upstream_requests"],
                    "limit": FLOOD_LIMIT,
                    "statuses": seen.statuses,
                    "envoy": dict(delta.counters),
                    "failed": seen.failed,
                    "seconds": seen.seconds,
                    "load_average": load_now(),
                }
                found[role].append(result)
                if role.startswith("ours") and delta.counters["ok"] > FLOOD_LIMIT:
                    self.problems.append(
                        f"flood {ip}: our service answered OK {delta.counters['ok']} times, "
                        f"limit {FLOOD_LIMIT}"
                    )
                self.step(
                    f"rls flood {role} {ip}: {result['admitted']} reached the upstream "
                    f"(limit {FLOOD_LIMIT}), statuses {seen.statuses}, "
                    f"Envoy {dict(delta.counters)}, {seen.seconds:.2f} s"
                )
        return found

    # ---- rounds ---------------------------------------------------------------------------

    def _rounds(self, loads: dict[str, Callable[[float], dict[str, Any]]]) -> None:
        """A short unrecorded warm-up of every load, then ``--rls-rounds`` rounds, each
        load once per round, in reversed order every other round."""
        seconds = self.args.rls_seconds
        # A smoke run has no warm-up: its figures mean nothing anyway.
        for round_ in range(0 if self.args.smoke else -1, self.args.rls_rounds):
            order = list(loads) if round_ % 2 == 0 else list(reversed(loads))
            for name in order:
                result = loads[name](min(seconds, WARM_UP_SECONDS) if round_ < 0 else seconds)
                result["load_average"] = load_now()
                label = "warm-up" if round_ < 0 else f"round {round_ + 1}"
                if round_ < 0:
                    result["problems"] = [f"warm-up: {p}" for p in result["problems"]]
                if round_ >= 0:
                    self.raw.setdefault(name, []).append(result)
                elif not name.startswith("peer"):
                    # Not a figure, but a finding all the same (the peer's are its own).
                    self.problems += [f"{name} {p}" for p in result["problems"]]
                self.step(
                    f"rls {label} {name}: {result['per_second']:.0f}/s "
                    f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms"
                    + (
                        f" server {result['server_cores']:.2f} cores, generator "
                        f"{result['generator_cores']:.2f}"
                        if "server_cores" in result
                        else ""
                    )
                    + (f" Envoy {result['envoy']}" if "envoy" in result else "")
                    + (
                        f" RLS p50 {result['rls_p50_ms']} ms p99 {result['rls_p99_ms']} ms"
                        if "rls_p50_ms" in result
                        else ""
                    )
                    + (f" FAILED {'; '.join(result['problems'])}" if result["problems"] else "")
                )

    def rows(self) -> dict[str, RlsRow]:
        rows: dict[str, RlsRow] = {}
        for name, runs in self.raw.items():
            row: RlsRow = {
                "runs": len(runs),
                "per_second": _median([r["per_second"] for r in runs]),
                "rates": [r["per_second"] for r in runs],
                "p50_ms": _median([r["p50_ms"] for r in runs]),
                "p99_ms": _median([r["p99_ms"] for r in runs]),
                "problems": [p for r in runs for p in r["problems"]],
                "load_average": max(r["load_average"] for r in runs),
            }
            for field in ("server_cores", "generator_cores"):
                if field in runs[0]:
                    row[field] = _median([r[field] for r in runs])
            if "envoy" in runs[0]:
                row["envoy"] = {k: sum(r["envoy"][k] for r in runs) for k in runs[0]["envoy"]}
                for field in ("rls_p50_ms", "rls_p99_ms"):
                    values = [r[field] for r in runs if r[field] is not None]
                    row[field] = _median(values) if values else None  # type: ignore[literal-required]
            if "keys_sent" in runs[0]:
                row["keys_sent"] = min(r["keys_sent"] for r in runs)
                # Requests of all the runs, the warm-up's included: at most that many
                # distinct IPs (the stored keys say how many the service decided).
                row["keys_sent_in_all"] = min(
                    2 * self.ips_walked.get(name[: -len("_ips")], 0), self.args.rls_ips
                )
            rows[name] = row
        return rows

    def ratios(self) -> dict[str, list[float]]:
        """Each ratio per round, of two loads measured in the same round."""
        pairs = {
            "grpc_1_vs_http": ("grpc_1", "http_decide_1"),
            "grpc_3_vs_http": ("grpc_3", "http_decide_3"),
            "grpc_3_vs_grpc_1": ("grpc_3", "grpc_1"),
            "ours_grpc_1_vs_peer": ("grpc_1", "peer_grpc_1"),
            "ours_grpc_3_vs_peer": ("grpc_3", "peer_grpc_3"),
            "ours_one_vs_off": ("ours_one", "off_one"),
            "ours_ips_vs_off": ("ours_ips", "off_ips"),
            "ours_bridge_one_vs_off": ("ours_bridge_one", "off_one"),
            "ours_bridge_ips_vs_off": ("ours_bridge_ips", "off_ips"),
            "bridge_vs_grpc_one": ("ours_bridge_one", "ours_one"),
            "bridge_vs_grpc_ips": ("ours_bridge_ips", "ours_ips"),
            "peer_one_vs_off": ("peer_one", "off_one"),
            "peer_ips_vs_off": ("peer_ips", "off_ips"),
            "ours_one_vs_peer": ("ours_one", "peer_one"),
            "ours_ips_vs_peer": ("ours_ips", "peer_ips"),
        }
        found: dict[str, list[float]] = {}
        for name, (a, b) in pairs.items():
            if a in self.raw and b in self.raw:
                found[name] = [
                    _ratio(x["per_second"], y["per_second"])
                    for x, y in zip(self.raw[a], self.raw[b], strict=True)
                ]
        return found


def run_rls(
    stack: Stack,
    args: argparse.Namespace,
    step: Callable[[str], None],
    running: tuple[str, str] | None = None,
) -> RlsPart:
    """The whole part on ``stack`` (its members running); stops what it started.
    ``running``: the strategy and counters map of replicas already up with
    :func:`replica_env`, used as they are when their strategy is the default one."""
    run = RlsRun(stack, args, step, running)
    began = time.monotonic()
    ghz: Path | None = None
    try:
        if args.smoke and not ghz_cached():
            # A smoke run stays under half a minute: it does not build ghz.
            raise GhzMissing("ghz is not built yet, and a smoke run does not build it")
        ghz = ghz_binary()
        generator = f"ghz ({ghz})"
    except GhzMissing as error:
        generator = f"none: {error}"
        step(f"rls: gRPC loads skipped: {error}")
    try:
        envoys = run.start()
        run.check_answers()
        started = time.monotonic()
        run.decisions(ghz)
        step(f"rls: decisions per replica measured in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        run.through_envoy(envoys)
        step(f"rls: Envoy's loads measured in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        floods = run.floods(envoys)
        step(f"rls: floods and stored keys in {time.monotonic() - started:.1f} s")
        peer_keys = (
            redis_keys(run.peer_ports.redis, f"*remote_address_{IPS_PREFIX}.*")
            if run.peer["ran"]
            else None
        )
    finally:
        run.stop()
    step(f"rls: the part took {time.monotonic() - began:.0f} s")
    rows = run.rows()
    envoy_rows = {
        k: v for k, v in rows.items() if not k.startswith(("http_", "grpc_", "peer_grpc_"))
    }
    if "ours_ips" in envoy_rows:
        envoy_rows["ours_ips"]["keys_stored"] = len(run.ours_keys)
    if "peer_ips" in envoy_rows:
        envoy_rows["peer_ips"]["keys_stored"] = peer_keys
    round_ratios = run.ratios()
    # The peer's own troubles are its figures, not findings against this service.
    problems = run.problems + [
        f"{name}: {p}"
        for name, row in rows.items()
        if not name.startswith("peer")
        for p in row["problems"]
    ]
    return {
        "seconds_per_run": args.rls_seconds,
        "rounds": args.rls_rounds,
        "connections": args.rls_connections,
        "ips": args.rls_ips,
        "generator": generator,
        "config": shown(Path(args.rls_config)),
        "peer": run.peer,
        "decisions": {k: v for k, v in rows.items() if k not in envoy_rows},
        "envoy": envoy_rows,
        "ratios": {k: _median(v) for k, v in round_ratios.items()},
        "round_ratios": round_ratios,
        "floods": floods,
        "problems": problems,
    }
