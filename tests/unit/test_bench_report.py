"""The benchmark report's load averages and its busy-machine mark."""

from __future__ import annotations

from typing import cast

import pytest

from benchmarks.rate_steps import LoadAtEnds, expected_admitted
from benchmarks.report import _markdown as report_markdown
from benchmarks.report import busy_note
from benchmarks.results import Machine, Report

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


def _row(**figures: object) -> dict[str, object]:
    return {
        "per_second": 1000.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "p999_ms": 3.0,
        "problems": [],
        **figures,
    }


def test_every_in_process_and_end_to_end_row_shows_its_load_average() -> None:
    """The report's in-process and end-to-end tables carry each row's load average, and the
    end-to-end paragraph counts its own rounds, not the in-process ones."""
    machine: dict[str, object] = {field: "-" for field in Machine.__annotations__}
    machine.update(busy=False, cpus=2)
    floor = _row(runs=3, decisions=10, vs_get=1.0, vs_set=1.0, load_average=7.25)
    report = {
        "command": "python -m benchmarks",
        "started": "-",
        "finished": "-",
        "elapsed_seconds": 1.0,
        "machine": machine,
        "options": {
            "smoke": True,
            "strategies": [],
            "connections": 64,
            "duration": 5,
            "rounds": 3,
            "e2e_rounds": 5,
            "exact_limit": 1000,
            "clients": 1000,
        },
        "inprocess": {
            "seconds_per_run": 1.0,
            "rounds": 3,
            "concurrency": [16],
            "keys": [1],
            "strategies": [],
            "burst": {"limit": 10, "requests": 40, "tasks": 8, "problems": {}},
            "scenarios": {"hot key": {"get": {"16": floor}, "set": {"16": floor}}},
        },
        "endtoend": {"cas": {"under": _row(ratio_to_health=0.5, statuses=[], load_average=3.5)}},
    }
    text = report_markdown(cast(Report, report), [])
    assert "| 7.25 |" in text and "| 3.50 |" in text
    assert "median of 5 rounds" in text
