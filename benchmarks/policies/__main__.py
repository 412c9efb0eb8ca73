"""``python -m benchmarks.policies``: the suite's policies part alone, on a stack of its own
(3 members, nginx, 3 replicas; RATELIMIT_BENCH_BASE_PORT), into ``.run/bench-policies/``.
Every option of ``python -m benchmarks`` applies (``--strategies``, ``--http-strategies``,
``--policy-*``, ``--connections``, ``--duration``, ``--smoke``, ``--out``)."""

import sys

from benchmarks.__main__ import main
from stack import ROOT

sys.exit(
    main(
        prog="python -m benchmarks.policies",
        out=ROOT / ".run" / "bench-policies",
        only=("policies",),
    )
)
