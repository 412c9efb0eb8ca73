"""The paired benchmark's report: medians per checkout, and the ratios it is read by."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.tools.paired import report

pytestmark = pytest.mark.unit


def _run(label: str, scenario: str, rate: float, replicas: float = 0.1) -> dict[str, Any]:
    return {
        "label": label,
        "scenario": scenario,
        "rate": rate,
        "p50_ms": 1.0,
        "p99_ms": 9.0,
        "replicas": replicas,
        "members": 0.05,
    }


def test_the_report_pairs_the_spread_rates_round_by_round() -> None:
    """Each round's after ÷ before spread rate, and each side's spread ÷ its own /health,
    come from the runs of that round, with medians over the rounds."""
    runs = [
        _run("before", "health", 1000),
        _run("after", "health", 2000),
        _run("before", "spread", 100, replicas=0.3),
        _run("after", "spread", 400, replicas=0.2),
        _run("before", "health", 1000),
        _run("after", "health", 1000),
        _run("before", "spread", 200, replicas=0.5),
        _run("after", "spread", 300, replicas=0.2),
    ]
    text = report(["before", "after"], runs)
    assert "after ÷ before, spread rate per round: 4.00, 1.50 (median 2.75)" in text
    assert "- before: spread ÷ its /health per round 0.10, 0.20 (median 0.15)" in text
    assert "- after: spread ÷ its /health per round 0.20, 0.30 (median 0.25)" in text
    assert "| before | spread | 150 | 1.00 | 9.00 | 0.400 | 0.050 |" in text
