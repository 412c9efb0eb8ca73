"""End to end through nginx and the replicas, with wrk: the scenarios of
:mod:`benchmarks.endtoend.tool` (``/health``, one client under its limit, one long past it,
one flooded client with a limit of ``exact_limit``) plus ``clients``: ``clients`` clients
far under their limits, each request naming the next one (nothing to batch: every
request is its own cluster operation, as in the in-process spread runs).

Why a module of its own: the suite runs these on replicas it has already started for a
strategy (and then runs k6 on the same replicas), so it needs one round, not the
stand-alone tool's whole life cycle; the checks (:mod:`.checks`) are the tool's.

Exactness of ``clients``: only 200s, no contended answer, and the usage each client
reports afterwards (``GET /bucket/{id}``) sums to at least the 200s wrk saw (fewer
stored than admitted is a lost update: an over-admission) and at most that plus the
requests wrk left in flight when it stopped (counted, but never answered to wrk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from benchmarks.clients import create_client, create_clients
from benchmarks.endtoend.checks import problems
from benchmarks.load.wrk import run_wrk
from benchmarks.results import EndToEndRow
from benchmarks.stack import ADMIN
from benchmarks.stats import load_now

__all__ = ["SCENARIOS", "FrontDoorOptions", "run_round", "summarise"]

SCENARIOS = ("health", "under", "past", "exact", "clients")


@dataclasses.dataclass(frozen=True)
class FrontDoorOptions:
    connections: int = 64
    duration: float = 4.0
    rounds: int = 2
    exact_limit: int = 1000
    clients: int = 1000


async def _used(base: str, ids: Sequence[str]) -> int:
    """The sum of what each client has used in its window, as the API reports it."""
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=base, headers=ADMIN, timeout=30) as http:

        async def one(client_id: str) -> int:
            async with gate:
                read = await http.get(f"/bucket/{client_id}")
                read.raise_for_status()
                return int(read.json()["usage"]["used"])

        return sum(await asyncio.gather(*(one(i) for i in ids)))


def run_round(
    base: str, options: FrontDoorOptions, report: Callable[[str, dict[str, Any]], None]
) -> dict[str, dict[str, Any]]:
    """One round of every scenario on the replicas that run now; ``report`` is told of
    each run as it ends."""
    clients = {
        "under": create_client(base, 10**9),
        "past": create_client(base, 1),
        "exact": create_client(base, options.exact_limit),
    }
    many = asyncio.run(create_clients(base, options.clients, 10**9))
    httpx.get(f"{base}/example", headers={"X-Api-Id": clients["past"]}, timeout=30)
    results: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        path = "/health" if scenario == "health" else "/example"
        headers = {"X-Api-Id": clients[scenario]} if scenario in clients else {}
        rotate = ("X-Api-Id", many) if scenario == "clients" else None
        seen = run_wrk(
            f"{base}{path}", options.connections, options.duration, headers=headers, rotate=rotate
        )
        result = {k: v for k, v in dataclasses.asdict(seen).items() if k != "output"}
        if scenario == "clients":
            # The same rules as one client under its limit, and the stored sum.
            found = problems("under", seen, options.exact_limit)
            admitted = seen.statuses.get(200, 0)
            used = asyncio.run(_used(base, many))
            result["stored"] = used
            if used < admitted:
                found.append(f"{admitted} admitted but {used} stored (lost updates)")
            elif used > admitted + options.connections:
                found.append(f"{used} stored, more than {admitted} admitted + in flight")
        else:
            found = problems(scenario, seen, options.exact_limit)
        result["problems"] = found
        result["load_average"] = load_now()
        results[scenario] = result
        report(scenario, result)
    return results


def summarise(runs: list[dict[str, dict[str, Any]]]) -> dict[str, EndToEndRow]:
    """Medians over rounds; each rate's ratio to ``/health`` of the same round."""
    rows: dict[str, EndToEndRow] = {}
    for scenario in SCENARIOS:
        seen = [r[scenario] for r in runs]
        ratios = [r[scenario]["per_second"] / r["health"]["per_second"] for r in runs]
        rows[scenario] = {
            "per_second": statistics.median(r["per_second"] for r in seen),
            "ratio_to_health": statistics.median(ratios),
            "p50_ms": statistics.median(r["p50_ms"] for r in seen),
            "p99_ms": statistics.median(r["p99_ms"] for r in seen),
            "p999_ms": statistics.median(r["p999_ms"] for r in seen),
            "statuses": [r["statuses"] for r in seen],
            "problems": [p for r in seen for p in r["problems"]],
            "load_average": max(r["load_average"] for r in seen),
        }
    return rows
