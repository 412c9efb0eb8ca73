"""The command line of ``python -m benchmarks``: its sections, its options and their
smoke sizes (what :mod:`benchmarks.__main__` runs them with is kept apart from how they
are asked for)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.rls import CONFIG_FILE as RLS_CONFIG_FILE
from limiter import STRATEGY_NAMES
from stack import ROOT

__all__ = ["HTTP_SECTIONS", "ORIGINAL_ON", "SECTIONS", "SMOKE", "parse"]

SECTIONS = ("inprocess", "scale", "endtoend", "k6", "policies", "rls", "failover")
#: The sections that need nginx and the replicas.
HTTP_SECTIONS = ("endtoend", "k6", "policies")
#: The strategy the original scenario runs on: the service's default.
ORIGINAL_ON = "entry_processor"

SMOKE = {
    "concurrency": [1, 16],
    "keys": [100],
    "seconds": 0.2,
    "rounds": 1,
    "connections": 8,
    "duration": 1,
    "e2e_rounds": 1,
    "exact_limit": 50,
    "clients": 20,
    "steps": [20, 40],
    "step_seconds": 1,
    "step_clients": 5,
    "max_vus": 20,
    "original": False,
    # One replica restart, not three: the HTTP code paths are the same for every strategy,
    # and the in-process grid still runs all of them.
    "http_strategies": ["entry_processor"],
    "policy_seconds": 0.2,
    "policy_rounds": 1,
    "policy_tasks": 8,
    "policy_keys": 100,
    "policy_clients": 20,
    "scale_keys": 2000,
    "scale_small_keys": 200,
    "scale_seconds": 0.3,
    "scale_rounds": 1,
    # One short round, no peer: the rls part's smoke run stays under half a minute.
    "rls_seconds": 1,
    "rls_rounds": 1,
    "rls_floods": 1,
    "rls_ips": 1000,
    "peer": False,
    "failover_windows": 2000,
    "failover_clients": 20,
    "failover_connections": 8,
    "failover_calm_seconds": 0.5,
}


def parse(
    argv: Sequence[str],
    *,
    prog: str = "python -m benchmarks",
    out: Path = ROOT / "docs" / "benchmarks",
    only: Sequence[str] = SECTIONS,
) -> argparse.Namespace:
    """The command line; ``prog``, ``out`` and ``only`` are the defaults of a command
    that runs part of the suite (``python -m benchmarks.policies``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does the tool work?")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(only))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGY_NAMES, default=None)
    parser.add_argument(
        "--http-strategies",
        nargs="+",
        choices=STRATEGY_NAMES,
        default=None,
        help="strategies of the end-to-end and k6 parts (default: --strategies)",
    )
    group = parser.add_argument_group("in process")
    group.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    group.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000])
    group.add_argument("--seconds", type=float, default=1.0, help="per contender and run")
    group.add_argument("--rounds", type=int, default=2)
    group = parser.add_argument_group("scale (in process, benchmarks.scale)")
    group.add_argument("--scale-keys", type=int, default=1_000_000, help="windows opened")
    group.add_argument(
        "--scale-small-keys", type=int, default=1000, help="the spread compared against"
    )
    group.add_argument("--scale-tasks", type=int, default=1024)
    group.add_argument("--scale-seconds", type=float, default=5.0, help="per timed run")
    group.add_argument("--scale-rounds", type=int, default=2)
    group = parser.add_argument_group("end to end (wrk)")
    group.add_argument("--connections", type=int, default=64)
    group.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    group.add_argument("--e2e-rounds", type=int, default=2)
    group.add_argument("--exact-limit", type=int, default=1000)
    group.add_argument("--clients", type=int, default=1000)
    group = parser.add_argument_group("k6")
    group.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200, 300, 450, 600, 800])
    group.add_argument("--step-seconds", type=int, default=5)
    group.add_argument("--step-clients", type=int, default=50)
    group.add_argument("--max-vus", type=int, default=300)
    group.add_argument(
        "--no-original", dest="original", action="store_false", help="skip the original scenario"
    )
    group = parser.add_argument_group("policies (end to end: --connections, --duration)")
    group.add_argument("--policy-seconds", type=float, default=2.0, help="per in-process run")
    group.add_argument(
        "--policy-rounds",
        type=int,
        default=4,
        help="in process and end to end (even: each shape first as often as the other)",
    )
    group.add_argument("--policy-tasks", type=int, default=64, help="in-process tasks")
    group.add_argument("--policy-keys", type=int, default=10_000, help="in-process clients")
    group.add_argument(
        "--policy-clients", type=int, default=1000, help="end-to-end clients of each shape"
    )
    group = parser.add_argument_group(
        "rls (gRPC per replica, through Envoy, against envoyproxy/ratelimit)"
    )
    group.add_argument("--rls-seconds", type=int, default=4, help="per load and round")
    group.add_argument("--rls-rounds", type=int, default=3)
    group.add_argument(
        "--rls-connections", type=int, default=32, help="wrk connections, ghz callers"
    )
    group.add_argument(
        "--rls-ips", type=int, default=10_000, help="distinct client IPs of the many-IP loads"
    )
    group.add_argument("--rls-floods", type=int, default=3, help="floods per service")
    group.add_argument(
        "--rls-config",
        type=Path,
        default=RLS_CONFIG_FILE,
        help="the rules both services read (domain storefront); with another file than "
        "the default the floods, which need its flood rule, are skipped "
        "(benchmarks/rls/unlimited/storefront.yaml: every limit lifted, what a call "
        "costs before any decision)",
    )
    group.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="skip envoyproxy/ratelimit (built with go install, on Redis)",
    )
    group = parser.add_argument_group(
        "failover (a member killed and a new one started under a flood, benchmarks.failover)"
    )
    group.add_argument(
        "--failover-windows", type=int, default=1_000_000, help="windows opened before"
    )
    group.add_argument("--failover-clients", type=int, default=200, help="flooded clients")
    group.add_argument("--failover-connections", type=int, default=64)
    group.add_argument(
        "--failover-calm-seconds",
        type=float,
        default=3.0,
        help="flood before the kill, after the cluster is whole again, after the join",
    )
    args = parser.parse_args(argv)
    args.prog = prog
    if args.smoke and args.out == parser.get_default("out"):
        # A smoke report's figures mean nothing: never over the committed report.
        args.out = ROOT / ".run" / "bench-smoke"
    if args.smoke:
        # Smoke sizes win over the defaults, not over what was asked for explicitly.
        defaults = parser.parse_args([])
        for name, value in SMOKE.items():
            if getattr(args, name) == getattr(defaults, name):
                setattr(args, name, value)
    args.strategies = args.strategies or list(STRATEGY_NAMES)
    args.http_strategies = args.http_strategies or args.strategies
    if not set(args.http_strategies) <= set(args.strategies):
        args.http_strategies = [s for s in args.http_strategies if s in args.strategies] or [
            args.strategies[0]
        ]
    return args
