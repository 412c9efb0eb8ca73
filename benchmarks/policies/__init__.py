"""What a client's policy costs: three limits against one, in process and end to end
(``python -m benchmarks --only policies``, or alone: ``python -m benchmarks.policies``).

The claim it measures: a client with three limits (a GCRA burst, a sliding hour and a
fixed day) costs at most 1.2 times a client with one fixed window, because every strategy
still decides the whole policy in one atomic cluster operation (one round trip); only the
rule runs three times, and the stored value holds three states. Its figure is the **cost
ratio**: the median rate of the one-limit runs divided by the median rate of the
three-limit runs of the same strategy (1.0: free; 1.2: 20 % dearer). It is a figure, never
a pass mark: on a shared machine it moves with the load, which every row gives.

- :mod:`.inprocess`: each strategy's :meth:`limiter.Strategy.decide_policy` from many
  tasks over many keys, runs of both shapes alternating;
- :mod:`.endtoend`: wrk through nginx and 3 replicas, each request naming the next of
  N clients of one shape, runs of both shapes alternating, beside ``/health``;
- :mod:`.tables`: the report's table and the run's exactness findings.

Exactness, as everywhere in the suite: no limit is ever reached, so every decision must
be admitted, and the states stored afterwards must count exactly the admissions, every
limit of a client alike (they are written together or not at all). Every limit's state
reads back as a count (:func:`counted`): a fixed window's count, a sliding window's two
counts, and a GCRA TAT, because the GCRA limit admits one request per window and lets
the rest through as burst, so its TAT is the first request's time plus one window per
admission.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.results import PolicyCost, PolicyRow
from limiter import Algorithm, Alignment, Limit, LimitState, Policy, WindowState
from limiter.gcra import GcraState
from limiter.sliding_window import SlidingWindowState
from registry.records import limit_as_dict

__all__ = [
    "LIMIT",
    "ONE_LIMIT",
    "SHAPES",
    "THREE_LIMITS",
    "compare",
    "counted",
    "limits_body",
    "merge_rows",
]

#: So high that no limit is ever reached in a run: every decision admits and writes.
LIMIT = 1_000_000_000
HOUR = 3600
DAY = 86_400

#: One fixed window, as every client had before policies.
ONE_LIMIT = Policy.single(LIMIT, HOUR, Alignment.FIRST_REQUEST)
#: One limit of each algorithm. The GCRA limit admits 1 request per hour and LIMIT more
#: as burst: nothing is denied, and its TAT counts the admissions in whole hours.
THREE_LIMITS = Policy(
    (
        Limit("burst", Algorithm.GCRA, 1, HOUR, burst=LIMIT),
        Limit("hourly", Algorithm.SLIDING_WINDOW, LIMIT, HOUR),
        Limit("daily", Algorithm.FIXED_WINDOW, LIMIT, DAY, Alignment.FIRST_REQUEST),
    )
)
#: The shapes compared, by the name the report gives them.
SHAPES: dict[str, Policy] = {"one_limit": ONE_LIMIT, "three_limits": THREE_LIMITS}


def limits_body(policy: Policy) -> list[dict[str, Any]]:
    """``policy``'s limits as ``POST /bucket`` takes them (``"limits": [...]``): as a
    record shows them, which is the shape the API accepts."""
    return [limit_as_dict(limit) for limit in policy.limits]


def counted(limit: Limit, state: LimitState | None, now_ms: int) -> int:
    """How many requests of cost 1 ``limit``'s stored state has admitted, for a client
    that was never denied and whose first request came less than a window ago.

    A fixed window counts them; a sliding window counts them in its two windows (a run
    may cross the clock's hour); a GCRA TAT is the first request's time plus one emission
    interval ``T = window / limit`` per admission, so with ``0 <= now - first < T`` the
    count is ``ceil((TAT - now) / T)``, worked out in the rule's exact units (1/limit ms).
    """
    if state is None:
        return 0
    if isinstance(state, WindowState):
        return state.count
    if isinstance(state, SlidingWindowState):
        return state.count + state.previous_count
    assert isinstance(state, GcraState)
    ahead = state.tat_ms * limit.limit + state.tat_fraction - now_ms * limit.limit
    return -(-ahead // (limit.window_seconds * 1000))


def merge_rows(runs: Sequence[dict[str, Any]]) -> PolicyRow:
    """One shape's runs of one strategy as the report keeps them: medians, every
    problem, every round's rate, and the highest load average."""
    merged: PolicyRow = {
        "runs": len(runs),
        "per_second": statistics.median(r["per_second"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "rates": [r["per_second"] for r in runs],
        "problems": [p for r in runs for p in r["problems"]],
        "load_average": max(r["load_average"] for r in runs),
    }
    for field in ("cluster_ops_per_decision", "ratio_to_health", "registry_reads_per_request"):
        if field in runs[0]:
            merged[field] = statistics.median(r[field] for r in runs)
    return merged


def compare(one: Sequence[dict[str, Any]], three: Sequence[dict[str, Any]]) -> PolicyCost:
    """Both shapes of one strategy, round by round in the same order, and the cost ratio
    of their median rates (0 when the three-limit runs decided nothing)."""
    one_row, three_row = merge_rows(one), merge_rows(three)
    return {
        "one_limit": one_row,
        "three_limits": three_row,
        "cost_ratio": _ratio(one_row["per_second"], three_row["per_second"]),
        "round_ratios": [
            _ratio(a["per_second"], b["per_second"]) for a, b in zip(one, three, strict=True)
        ],
    }


def _ratio(one: float, three: float) -> float:
    return one / three if three else 0.0
