"""CLI of the local stack: ``python -m stack up|down|status|clean-data``."""

from __future__ import annotations

import argparse
import os
import sys

from stack import LOOPBACK, MemberSettings, Part, Stack, StackError, http_ok

DEV_ADMIN_TOKEN = "dev-admin-token"


def parts_of(stack: Stack, replicas: int) -> list[Part]:
    """Every HTTP part the CLI manages, in start order."""
    env = {"RATELIMIT_ADMIN_TOKEN": os.environ.get("RATELIMIT_ADMIN_TOKEN", DEV_ADMIN_TOKEN)}
    return [
        *(stack.replica_part(i, env) for i in range(replicas)),
        stack.demo_app_part(),
        stack.nginx_part(replicas),
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
        print(f"{part.name:11} http://{LOOPBACK}:{part.port}/")
    print(
        f"entry point http://{LOOPBACK}:{stack.layout.nginx_port}/example (X-Api-Id), "
        f"gateway mode http://{LOOPBACK}:{stack.layout.nginx_port}/gateway/"
    )
    if "RATELIMIT_ADMIN_TOKEN" not in os.environ:
        print(f"admin token {DEV_ADMIN_TOKEN} (set RATELIMIT_ADMIN_TOKEN to choose one)")
    print(f"logs        {stack.log_dir}")


def status(stack: Stack) -> None:
    rows = stack.status()
    if not rows:
        print("nothing is running")
    probes = stack.http_probes()
    for name, pid in rows:
        state = "dead" if pid is None else "running"
        if pid is not None and name in probes:
            state = "ready" if http_ok(*probes[name]) else "not ready"
        print(f"{name:11} {state:9} pid {pid or '-'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
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
    stack = Stack(member_settings=members)
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
