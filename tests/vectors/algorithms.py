"""Reads the shared vectors of the sliding-window and GCRA rules (also read by
SlidingWindowRuleTest.java and GcraRuleTest.java): single decisions and batches.

A ``retry_after_ms`` of -1 in the files is a decision without one (``None`` here, the
constant ``NO_RETRY`` in Java)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from limiter.gcra import GcraState
from limiter.rule import Decision, Reason
from limiter.sliding_window import SlidingWindowState

HERE = Path(__file__).parent


def vector_rows(name: str) -> list[dict[str, str]]:
    with (HERE / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


def numbers(field: str) -> list[int]:
    return [int(value) for value in field.split()]


def optional_ms(value: int) -> int | None:
    return None if value == -1 else value


def _decisions(row: dict[str, str], reason_column: str) -> list[Decision]:
    """One decision per number in the row's columns (one for a single-decision row)."""
    limit = int(row["limit"])
    columns = zip(
        numbers(row["allowed"]),
        numbers(row["remaining"]),
        numbers(row["reset_after_ms"]),
        numbers(row["retry_after_ms"]),
        numbers(row[reason_column]),
        strict=True,
    )
    return [
        Decision(bool(allowed), limit, remaining, reset, Reason(reason), optional_ms(retry))
        for allowed, remaining, reset, retry, reason in columns
    ]


class SlidingVector(NamedTuple):
    name: str
    state: SlidingWindowState | None
    now_ms: int
    costs: list[int]
    limit: int
    window_seconds: int
    expected_state: SlidingWindowState
    expected: list[Decision]


def _sliding(row: dict[str, str], costs: str, reasons: str) -> SlidingVector:
    state = SlidingWindowState(
        int(row["state_window_start_ms"]),
        int(row["state_count"]),
        int(row["state_previous_count"]),
    )
    return SlidingVector(
        row["name"],
        state if row["has_state"] == "1" else None,
        int(row["now_ms"]),
        numbers(row[costs]),
        int(row["limit"]),
        int(row["window_seconds"]),
        SlidingWindowState(
            int(row["new_window_start_ms"]), int(row["new_count"]), int(row["new_previous_count"])
        ),
        _decisions(row, reasons),
    )


def load_sliding() -> list[SlidingVector]:
    """``sliding_window.csv``: one request each (``costs`` and ``expected`` of one)."""
    return [_sliding(row, "cost", "reason") for row in vector_rows("sliding_window.csv")]


def load_sliding_batch() -> list[SlidingVector]:
    """``sliding_window_batch.csv``: several requests of one key at one instant."""
    return [_sliding(row, "costs", "reasons") for row in vector_rows("sliding_window_batch.csv")]


class GcraVector(NamedTuple):
    name: str
    state: GcraState | None
    now_ms: int
    costs: list[int]
    limit: int
    window_seconds: int
    burst: int
    expected_state: GcraState
    expected: list[Decision]


def _gcra(row: dict[str, str], costs: str, reasons: str) -> GcraVector:
    state = GcraState(int(row["state_tat_ms"]), int(row["state_tat_fraction"]))
    return GcraVector(
        row["name"],
        state if row["has_state"] == "1" else None,
        int(row["now_ms"]),
        numbers(row[costs]),
        int(row["limit"]),
        int(row["window_seconds"]),
        int(row["burst"]),
        GcraState(int(row["new_tat_ms"]), int(row["new_tat_fraction"])),
        _decisions(row, reasons),
    )


def load_gcra() -> list[GcraVector]:
    """``gcra.csv``: one request each (``costs`` and ``expected`` of one)."""
    return [_gcra(row, "cost", "reason") for row in vector_rows("gcra.csv")]


def load_gcra_batch() -> list[GcraVector]:
    """``gcra_batch.csv``: several requests of one key at one instant."""
    return [_gcra(row, "costs", "reasons") for row in vector_rows("gcra_batch.csv")]
