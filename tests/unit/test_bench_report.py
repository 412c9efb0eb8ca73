"""The benchmark report's load averages and its busy-machine mark."""

from __future__ import annotations

from typing import cast

import pytest

from benchmarks.rate_steps import LoadAtEnds, expected_admitted
from benchmarks.report import busy_note
from benchmarks.results import Report

pytestmark = pytest.mark.unit


def test_every_step_gets_a_load_average_even_when_k6_ends_before_its_timer() -> None:
    """A step whose timer never fired is read at stop, so no step lacks its load average."""
    loads = LoadAtEnds([0.0, 3600.0])
    loads.start()
    readings = loads.stop()
    assert len(readings) == 2 and all(r >= 0 for r in readings)


def test_a_busy_start_is_marked_and_a_quiet_one_is_not() -> None:
    """The mark names the load average and the core count; a quiet run has none."""
    machine = {"busy": True, "load_average_at_start": "11.7 7.9 4.1", "cpus": 2}
    busy = cast(Report, {"machine": machine})
    assert "BUSY MACHINE" in busy_note(busy) and "11.7" in busy_note(busy)
    quiet = cast(Report, {"machine": {**machine, "busy": False}})
    assert busy_note(quiet) == ""


def test_the_expected_admissions_spread_the_remainder_over_the_first_clients() -> None:
    """Requests i go to client i mod N; each client admits up to its limit."""
    assert expected_admitted(10, 3, 3) == 3 + 3 + 3
    assert expected_admitted(10, 3, 10) == 10
