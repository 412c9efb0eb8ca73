"""The benchmark stack: the one place that builds it, so that a change in how a
:class:`stack.Stack` is built (its ports, its parts) is made here once for the
suite, the end-to-end tool and the toolbox.

Its ports start at ``RATELIMIT_BENCH_BASE_PORT`` (members there, HTTP parts 15000
above), clear of the development stack (``make up``) and the test suite's, so a
benchmark can run beside either; two benchmarks run side by side on two base ports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from stack import ROOT, Layout, MemberSettings, Stack

__all__ = ["ADMIN", "ADMIN_TOKEN", "MEMBERS", "REPLICAS", "RESULTS", "bench_stack"]

#: Where the stand-alone tools write their results (the suite writes docs/benchmarks/).
RESULTS = Path(__file__).parent / "results"
ADMIN_TOKEN = "bench-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MEMBERS = 3
REPLICAS = 3


def bench_stack(
    member_options: Sequence[str] = (),
    *,
    name: str = "bench",
    default_base_port: int = 5901,
    registry_store: bool = True,
    fresh: bool = True,
) -> Stack:
    """The stack of benchmark ``name`` in ``.run/<name>-<port>``, on
    RATELIMIT_BENCH_BASE_PORT (else ``default_base_port``).

    ``fresh``: stopped if an interrupted run left it up, and with an empty registry.
    Clients of earlier runs would otherwise pile up in its database, and the members load
    every one at start (after a few runs over 100,000 clients, longer than a replica's
    readiness deadline)."""
    base = int(os.environ.get("RATELIMIT_BENCH_BASE_PORT", str(default_base_port)))
    stack = Stack(
        Layout.at(base),
        ROOT / ".run" / f"{name}-{base}",
        f"ratelimit-{name}-{base}",
        MemberSettings(registry_store=registry_store, jvm_options=tuple(member_options)),
    )
    if fresh:
        stack.stop()
        stack.remove_database_data()
    return stack
