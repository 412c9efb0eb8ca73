"""What is wrong with one wrk run through the front door, if anything: the exactness
rules of every end-to-end scenario, shared by the suite's rounds and the stand-alone tool."""

from __future__ import annotations

from benchmarks.load.wrk import WrkRun

__all__ = ["problems"]


def problems(scenario: str, run: WrkRun, exact_limit: int) -> list[str]:
    """What is wrong with one run, if anything."""
    found = []
    statuses = run.statuses
    if run.socket_error_count:
        found.append(f"{run.socket_error_count} socket errors")
    if run.degraded:
        found.append(f"{run.degraded} answers degraded (failed open or closed)")
    under_limits = scenario in ("health", "under") or scenario.startswith("spread")
    allowed_statuses = {200} if under_limits else {200, 429}
    if set(statuses) - allowed_statuses:
        found.append(f"statuses {statuses}")
    if under_limits and run.contended:
        found.append(f"{run.contended} contended denials under the limit")
    if scenario == "past" and statuses.get(200, 0):
        found.append(f"{statuses[200]} admitted past the limit")
    expected = min(sum(statuses.values()), exact_limit)
    if scenario == "exact" and statuses.get(200, 0) != expected:
        found.append(
            f"{statuses.get(200, 0)} admitted of {sum(statuses.values())}, limit {exact_limit}"
        )
    return found
