"""The policies part as the suite (:mod:`benchmarks.__main__`) runs it: from the command's
options, on the suite's stack, into its report."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from benchmarks.policies import SHAPES, limits_body
from benchmarks.policies.endtoend import PolicyHttpOptions, Target, run_policy_rounds
from benchmarks.policies.inprocess import PolicyOptions, run_policies
from benchmarks.results import Policies, Report
from benchmarks.stack import REPLICAS
from stack import Stack

__all__ = ["endtoend", "inprocess"]


def inprocess(stack: Stack, args: argparse.Namespace, step: Callable[[str], None]) -> Policies:
    """The in-process rounds of every strategy of ``--strategies``, on ``stack``'s members;
    the end-to-end side is filled in later, per strategy, by :func:`endtoend`."""
    options = PolicyOptions(
        members=stack.member_addresses(3),
        cluster_name=stack.cluster_name,
        strategies=args.strategies,
        tasks=args.policy_tasks,
        keys=args.policy_keys,
        seconds=args.policy_seconds,
        rounds=args.policy_rounds,
    )
    return {
        "shapes": {shape: limits_body(policy) for shape, policy in SHAPES.items()},
        "inprocess": asyncio.run(run_policies(options, step)),
        "endtoend": None,
    }


def endtoend(
    stack: Stack,
    args: argparse.Namespace,
    report: Report,
    replicas: tuple[str, str],
    step: Callable[[str], None],
) -> None:
    """The end-to-end rounds on the replicas that run now (``replicas``: their strategy
    and counters map), into ``report``'s policies part."""
    strategy, counters_map = replicas
    target = Target(
        base=f"http://127.0.0.1:{stack.nginx_port}",
        replica_urls=[f"http://127.0.0.1:{stack.replica_port(i)}" for i in range(REPLICAS)],
        members=stack.member_addresses(3),
        cluster_name=stack.cluster_name,
        counters_map=counters_map,
        strategy=strategy,
    )
    options = PolicyHttpOptions(
        connections=args.connections,
        duration=args.duration,
        rounds=args.policy_rounds,
        clients=args.policy_clients,
    )
    policies = report.setdefault(
        "policies",
        {
            "shapes": {shape: limits_body(policy) for shape, policy in SHAPES.items()},
            "inprocess": None,
            "endtoend": None,
        },
    )
    side = policies["endtoend"]
    if side is None:
        side = policies["endtoend"] = {
            "duration_seconds": args.duration,
            "rounds": args.policy_rounds,
            "connections": args.connections,
            "clients": args.policy_clients,
            "strategies": {},
        }
    side["strategies"][strategy] = asyncio.run(run_policy_rounds(target, options, step))
