"""CLI of the local stack: ``python -m stack up|down|status``."""

from __future__ import annotations

import argparse
import sys

from stack.runner import Stack, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and wait until every part is ready")
    up.add_argument("--members", type=int, default=3, help="Hazelcast members (default 3)")
    up.add_argument(
        "--quorum", type=int, default=None, help="registry quorum (default min(members, 2))"
    )
    sub.add_parser("down", help="stop every part this stack started")
    sub.add_parser("status", help="show which parts run")
    args = parser.parse_args(argv)

    stack = Stack(registry_quorum=getattr(args, "quorum", None))
    try:
        if args.command == "up":
            if args.members < 1:
                raise StackError("--members must be at least 1")
            seconds = stack.start_members(args.members)
            print(
                f"hazelcast: {args.members} members joined in {seconds:.1f}s, cluster "
                f"{stack.cluster_name!r} on {', '.join(stack.member_addresses(args.members))}"
            )
            print(f"logs: {stack.log_dir}")
        elif args.command == "down":
            # Also the stacks the tests start in sub-folders, should a run have been killed.
            stopped = []
            for pid_dir in sorted(stack.run_dir.glob("**/pids")):
                stopped += Stack(run_dir=pid_dir.parent).stop()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        else:
            rows = stack.status()
            if not rows:
                print("nothing is running")
            for name, pid in rows:
                print(f"{name:12} {'running' if pid else 'dead':8} pid {pid or '-'}")
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
