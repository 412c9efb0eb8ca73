"""Reads the shared vectors (also read by FixedWindowRuleTest.java)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from limiter import Decision, Reason, WindowState

VECTORS = Path(__file__).with_name("fixed_window.csv")


class Vector(NamedTuple):
    name: str
    state: WindowState | None
    now_ms: int
    cost: int
    limit: int
    window_seconds: int
    expected_state: WindowState
    expected: Decision


def load() -> list[Vector]:
    with VECTORS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    vectors = []
    for row in rows:
        number = {k: int(v) for k, v in row.items() if k != "name"}
        state = (
            WindowState(number["state_window_start_ms"], number["state_count"])
            if number["has_state"]
            else None
        )
        vectors.append(
            Vector(
                row["name"],
                state,
                number["now_ms"],
                number["cost"],
                number["limit"],
                number["window_seconds"],
                WindowState(number["new_window_start_ms"], number["new_count"]),
                Decision(
                    bool(number["allowed"]),
                    number["limit"],
                    number["remaining"],
                    number["reset_after_ms"],
                    Reason(number["reason"]),
                ),
            )
        )
    return vectors
