"""The policies benchmark's own arithmetic: a stored state read back as a count, the cost
ratio, and its table and findings in the report."""

from __future__ import annotations

from typing import cast

import pytest

from benchmarks.policies import ONE_LIMIT, SHAPES, THREE_LIMITS, compare, counted, limits_body
from benchmarks.policies.tables import policy_problems, policy_section
from benchmarks.results import Policies
from limiter import LimitState, Policy, policy_rule

pytestmark = pytest.mark.unit

START_MS = 1_700_000_000_123


@pytest.mark.parametrize("policy", [ONE_LIMIT, THREE_LIMITS], ids=["one", "three"])
@pytest.mark.parametrize("admitted", [1, 2, 7, 1000])
def test_every_limit_reads_back_the_requests_the_rule_admitted(
    policy: Policy, admitted: int
) -> None:
    """Decided by the pure rule over a few seconds, each limit's state counts exactly the
    admissions when read later on (the GCRA one through its TAT)."""
    states: tuple[LimitState | None, ...] = (None,) * len(policy)
    for i in range(admitted):
        now = START_MS + i * 3  # 1000 requests over 3 s
        states, decision = policy_rule.decide(states, now, 1, policy)
        assert decision.allowed
    for later in (0, 5_000, 3_000_000):
        read_at = START_MS + 3 * admitted + later
        counts = [counted(lim, s, read_at) for lim, s in zip(policy.limits, states, strict=True)]
        assert counts == [admitted] * len(counts)


def test_a_state_that_lost_an_update_reads_one_short() -> None:
    """One admission fewer in a GCRA TAT is a whole window, not a rounding."""
    states: tuple[LimitState | None, ...] = (None, None, None)
    for i in range(3):
        states, _ = policy_rule.decide(states, START_MS + i, 1, THREE_LIMITS)
    fewer, _ = policy_rule.decide((None, None, None), START_MS, 1, THREE_LIMITS)
    fewer, _ = policy_rule.decide(fewer, START_MS + 1, 1, THREE_LIMITS)
    gcra = THREE_LIMITS.limits[0]
    assert counted(gcra, states[0], START_MS + 10) == 3
    assert counted(gcra, fewer[0], START_MS + 10) == 2


def test_the_cost_ratio_is_of_the_median_rates_and_per_round() -> None:
    def run(rate: float) -> dict[str, object]:
        return {
            "per_second": rate,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "problems": [],
            "load_average": 1.0,
        }

    cost = compare([run(1200), run(1000), run(1100)], [run(1000), run(1000), run(500)])
    assert cost["cost_ratio"] == pytest.approx(1100 / 1000)
    assert cost["round_ratios"] == pytest.approx([1.2, 1.0, 2.2])
    assert cost["three_limits"]["rates"] == [1000, 1000, 500]


def test_the_report_shows_each_ratio_and_fails_on_a_problem() -> None:
    def row(problems: list[str]) -> dict[str, object]:
        return {
            "runs": 1,
            "per_second": 100.0,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "rates": [100.0],
            "problems": problems,
            "load_average": 2.5,
        }

    cost = {
        "one_limit": row([]),
        "three_limits": row(["client 3: 5 admitted, stored [5, 4, 5]"]),
        "cost_ratio": 1.07,
        "round_ratios": [1.07],
    }
    side = {
        "seconds_per_run": 1.0,
        "rounds": 1,
        "tasks": 8,
        "keys": 10,
        "strategies": {"cas": cost},
    }
    policies = cast(
        Policies,
        {
            "shapes": {shape: limits_body(policy) for shape, policy in SHAPES.items()},
            "inprocess": side,
            "endtoend": None,
        },
    )
    text = "\n".join(policy_section(policies))
    assert "**1.07** (1.07)" in text and "| 2.50 |" in text and "burst gcra" in text
    assert policy_problems(policies) == [
        "policies in process cas three_limits: client 3: 5 admitted, stored [5, 4, 5]"
    ]
