"""The policies part in the report: its table, and its exactness findings for FAILED.

Kept beside the part rather than in :mod:`benchmarks.report`, so that the report reads a
part's figures through one function per part.
"""

from __future__ import annotations

from benchmarks.results import Policies, PolicyCost, PolicyRow

__all__ = ["policy_problems", "policy_section"]

_SHAPE_LABELS = {"one_limit": "1 limit", "three_limits": "3 limits", "health": "/health"}


def policy_problems(policies: Policies | None) -> list[str]:
    """Every exactness problem of the policies part, labelled."""
    found: list[str] = []
    if not policies:
        return found
    for where, side in (
        ("in process", policies["inprocess"]),
        ("end to end", policies["endtoend"]),
    ):
        for strategy, cost in (side["strategies"] if side else {}).items():
            for shape, row in _rows(cost):
                found += [f"policies {where} {strategy} {shape}: {p}" for p in row["problems"]]
    return found


def _rows(cost: PolicyCost) -> list[tuple[str, PolicyRow]]:
    rows = [("health", cost["health"])] if "health" in cost else []
    return [*rows, ("one_limit", cost["one_limit"]), ("three_limits", cost["three_limits"])]


def _table(where: str, strategies: dict[str, PolicyCost]) -> list[str]:
    out = [
        "| where | strategy | limits | decisions/s | vs /health | p50 ms | p99 ms "
        "| cluster ops/decision | cost ratio (per round) | load | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for strategy, cost in strategies.items():
        for shape, row in _rows(cost):
            ratio = ""
            if shape == "three_limits":
                rounds = ", ".join(f"{r:.2f}" for r in cost["round_ratios"])
                ratio = f"**{cost['cost_ratio']:.2f}** ({rounds})"
            vs_health = f"{row['ratio_to_health']:.2f}" if "ratio_to_health" in row else "-"
            ops = row.get("cluster_ops_per_decision")
            check = "FAILED: " + "; ".join(row["problems"]) if row["problems"] else "exact"
            out.append(
                f"| {where} | {strategy} | {_SHAPE_LABELS[shape]} | {row['per_second']:.0f} | "
                f"{vs_health} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                f"{'-' if ops is None else f'{ops:.3f}'} | {ratio} | "
                f"{row['load_average']:.2f} | {check} |"
            )
    return out


def policy_section(policies: Policies | None) -> list[str]:
    """The report's section: one row per side, strategy and shape, the cost ratio on the
    three-limit row."""
    if not policies:
        return []
    inprocess, endtoend = policies["inprocess"], policies["endtoend"]
    shapes = "; ".join(
        f"{_SHAPE_LABELS[shape]}: "
        + ", ".join(f"{item['name']} {item['algorithm']}" for item in limits)
        for shape, limits in policies["shapes"].items()
    )
    out = [
        "## Policies: three limits against one",
        "",
        f"Clients of two shapes ({shapes}), no limit ever reached, runs of both shapes "
        "alternating (each first in every other round). Cost ratio: the median rate of "
        "the 1-limit runs over the median rate of the 3-limit runs of the same strategy "
        "(1.00: as cheap; 1.20: 20 % dearer), each round's own ratio in brackets. ",
    ]
    if inprocess:
        out[-1] += (
            f"In process: {inprocess['tasks']} tasks over {inprocess['keys']:,} fresh "
            f"clients, {inprocess['seconds_per_run']} s per run, median of "
            f"{inprocess['rounds']} rounds after a warm-up. "
        )
    if endtoend:
        out[-1] += (
            f"End to end: wrk, {endtoend['connections']} connections, "
            f"{endtoend['duration_seconds']} s per run, each request naming the next of "
            f"{endtoend['clients']:,} clients of its shape (warmed on every replica), median "
            f"of {endtoend['rounds']} rounds; vs /health: the rate over `/health`'s in the "
            "same round. "
        )
    out[-1] += (
        "Cluster ops/decision: below 1 where one call decided several requests (the entry "
        "processor's shard calls); end to end from the replicas' metrics. Check: every "
        "decision admitted and every limit's stored state counting exactly the admissions. "
        "Load: the highest 1-minute load average at the end of its runs."
    )
    out.append("")
    out += _table("in process", inprocess["strategies"]) if inprocess else []
    out += _table("end to end", endtoend["strategies"])[2 if inprocess else 0 :] if endtoend else []
    out.append("")
    return out
