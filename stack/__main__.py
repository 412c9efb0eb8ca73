"""CLI of the local stack: ``python -m stack up|down|status|clean-data``."""

from __future__ import annotations

import argparse
import os
import sys

from stack import LOOPBACK, ROOT, Layout, MemberSettings, Part, Stack, StackError, http_ok
from stack.process import port_accepts

DEV_ADMIN_TOKEN = "dev-admin-token"


def parts_of(stack: Stack, replicas: int) -> list[Part]:
    """Every HTTP part the CLI manages, in start order: Envoy after the replicas and the
    demo app, since its readiness waits for a first health check of each replica's gRPC
    service."""
    env = {"RATELIMIT_ADMIN_TOKEN": os.environ.get("RATELIMIT_ADMIN_TOKEN", DEV_ADMIN_TOKEN)}
    return [
        *(stack.replica_part(i, env) for i in range(replicas)),
        stack.demo_app_part(),
        stack.nginx_part(replicas),
        stack.envoy_part(replicas),
        stack.prometheus_part(replicas),
    ]


def up(stack: Stack, args: argparse.Namespace) -> None:
    if args.members < 1:
        raise StackError("--members must be at least 1")
    already = set(stack.running())
    stack.member_part(0, args.members)  # java and the jars, checked before anything starts
    try:
        seconds = stack.start_database()
        print(
            f"postgres    ready in {seconds:.1f}s on {LOOPBACK}:{stack.layout.database_port}, "
            f"data in {stack.database_dir / 'data'}"
        )
        seconds = stack.start_members(args.members)
        print(
            f"hazelcast   {args.members} member(s) joined in {seconds:.1f}s, cluster "
            f"{stack.cluster_name!r}: {', '.join(stack.member_addresses(args.members))}"
        )
        if args.replicas == 0:
            return
        parts = parts_of(stack, args.replicas)
        stack.start_parts(parts)
    except BaseException:
        # Nothing this attempt started is left running; what ran before stays.
        stack.stop([name for name in stack.running() if name not in already])
        raise
    for part in parts:
        if part.name != "envoy":  # below, with its admin
            print(f"{part.name:11} http://{LOOPBACK}:{part.port}/")
    grpc = ", ".join(f"{LOOPBACK}:{stack.replica_grpc_port(i)}" for i in range(args.replicas))
    print(f"rls (gRPC)  {grpc}")
    print(
        f"entry point http://{LOOPBACK}:{stack.layout.nginx_port}/example (X-Api-Id), "
        f"gateway mode http://{LOOPBACK}:{stack.layout.nginx_port}/gateway/"
    )
    envoy, admin = stack.layout.envoy_port, stack.layout.envoy_admin_port
    print(
        f"envoy       http://{LOOPBACK}:{envoy}/ (the demo app, each request asked of the "
        f"rate limit service), admin http://{LOOPBACK}:{admin}/"
    )
    if "RATELIMIT_ADMIN_TOKEN" not in os.environ:
        print(f"admin token {DEV_ADMIN_TOKEN} (set RATELIMIT_ADMIN_TOKEN to choose one)")
    print(f"logs        {stack.log_dir}")


def status(stack: Stack) -> None:
    rows = stack.status()
    if not rows:
        print("nothing is running")
    probes = stack.http_probes()
    grpc_ports = {stack.replica_name(i): stack.replica_grpc_port(i) for i in range(len(rows))}
    for name, pid in rows:
        state = "dead" if pid is None else "running"
        if pid is not None and name in probes:
            state = "ready" if http_ok(*probes[name]) else "not ready"
        line = f"{name:11} {state:9} pid {pid or '-'}"
        if name in grpc_ports:
            grpc = grpc_ports[name]
            listening = "listening" if pid is not None and port_accepts(grpc) else "closed"
            line += f"  gRPC {LOOPBACK}:{grpc} {listening}"
        elif name == "envoy":
            line += f"  http://{LOOPBACK}:{stack.layout.envoy_port}/"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="a second stack beside `make up`'s: every port derived from this one (as the "
        "tests' stack is), run folder .run/stack-<port>; give it to up, status and down alike",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the stack and wait until every part is ready")
    start.add_argument("--members", type=int, default=3, help="Hazelcast members (default 3)")
    start.add_argument(
        "--replicas",
        type=int,
        default=3,
        help="API replicas (default 3; 0 starts only the cluster)",
    )
    start.add_argument(
        "--quorum", type=int, default=None, help="registry quorum (default min(members, 2))"
    )
    sub.add_parser("down", help="stop every part this stack (or a test run) started")
    sub.add_parser("status", help="show which parts run and whether they are ready")
    sub.add_parser(
        "clean-data", help="delete the registry's database (every client); the stack must be down"
    )
    args = parser.parse_args(argv)

    members = MemberSettings(
        count=getattr(args, "members", 3), registry_quorum=getattr(args, "quorum", None)
    )
    if args.base_port is None:
        stack = Stack(member_settings=members)
    else:
        base = args.base_port
        stack = Stack(
            Layout.at(base), ROOT / ".run" / f"stack-{base}", f"ratelimit-{base}", members
        )
    try:
        if args.command == "up":
            up(stack, args)
        elif args.command == "down":
            # Also the stacks the tests start in sub-folders, should a run have been killed.
            stopped = []
            for pid_dir in sorted(stack.run_dir.glob("**/pids")):
                stopped += Stack(run_dir=pid_dir.parent).stop()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "clean-data":
            stack.remove_database_data()
            print(f"removed {stack.database_dir}")
        else:
            status(stack)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
