"""``python -m benchmarks.rls``: the suite's rate limit part alone, on a stack of its own
(3 members, 3 replicas with their gRPC service, Envoy, the peer; RATELIMIT_BENCH_BASE_PORT),
into ``.run/bench-rls/``. Every ``--rls-*`` option of ``python -m benchmarks`` applies, and
``--no-peer``, ``--smoke``, ``--out``."""

import sys

from benchmarks.__main__ import main
from stack import ROOT

sys.exit(main(prog="python -m benchmarks.rls", out=ROOT / ".run" / "bench-rls", only=("rls",)))
