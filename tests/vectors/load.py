"""Reads the shared vectors (also read by FixedWindowRuleTest.java): single decisions,
and batches (several queued requests decided by one cluster operation); and the entry
processor's wire contract (also read by WireContractTest.java)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from limiter import Alignment, Decision, Reason, WindowState

VECTORS = Path(__file__).with_name("fixed_window.csv")
BATCH_VECTORS = Path(__file__).with_name("fixed_window_batch.csv")


class Vector(NamedTuple):
    name: str
    state: WindowState | None
    now_ms: int
    cost: int
    limit: int
    window_seconds: int
    alignment: Alignment
    expected_state: WindowState
    expected: Decision


def load() -> list[Vector]:
    with VECTORS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    vectors = []
    for row in rows:
        number = {k: int(v) for k, v in row.items() if k not in ("name", "alignment")}
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
                Alignment(row["alignment"]),
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


class BatchVector(NamedTuple):
    name: str
    state: WindowState | None
    now_ms: int
    costs: list[int]
    limit: int
    window_seconds: int
    alignment: Alignment
    expected_state: WindowState
    expected: list[Decision]


def _numbers(field: str) -> list[int]:
    return [int(value) for value in field.split()]


def load_batch() -> list[BatchVector]:
    with BATCH_VECTORS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    vectors = []
    for row in rows:
        limit = int(row["limit"])
        reset_after_ms = int(row["reset_after_ms"])
        expected = [
            Decision(bool(allowed), limit, remaining, reset_after_ms, Reason(reason))
            for allowed, remaining, reason in zip(
                _numbers(row["allowed"]),
                _numbers(row["remaining"]),
                _numbers(row["reasons"]),
                strict=True,
            )
        ]
        state = (
            WindowState(int(row["state_window_start_ms"]), int(row["state_count"]))
            if row["has_state"] == "1"
            else None
        )
        vectors.append(
            BatchVector(
                row["name"],
                state,
                int(row["now_ms"]),
                _numbers(row["costs"]),
                limit,
                int(row["window_seconds"]),
                Alignment(row["alignment"]),
                WindowState(int(row["new_window_start_ms"]), int(row["new_count"])),
                expected,
            )
        )
    return vectors


WIRE_CONTRACT = Path(__file__).with_name("processor_wire.csv")


class WireNumber(NamedTuple):
    value: int
    #: ``both`` (a constant on each side), ``java`` (members only) or ``retired`` (an id
    #: that neither side may use again).
    sides: str


def load_wire() -> dict[str, WireNumber]:
    """The entry processor's wire contract (also read by WireContractTest.java)."""
    with WIRE_CONTRACT.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row["name"]: WireNumber(int(row["value"]), row["sides"]) for row in rows}
