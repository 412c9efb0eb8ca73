"""Prometheus rules and the Grafana dashboard, against the real Prometheus."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from limiter import STRATEGY_NAMES
from tests.conftest import Topology

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "ratelimit.json"


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    """promtool accepts rules.yml, and its unit tests (alerts fire, or stay quiet) pass."""
    folder = ROOT / "prometheus"
    check = subprocess.run(
        ["promtool", "check", "rules", "rules.yml"], cwd=folder, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        ["promtool", "test", "rules", "rules.test.yml"], cwd=folder, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout + tests.stderr


#: Series that only one strategy's decisions feed (their panels are empty otherwise).
STRATEGY_ONLY_SERIES = {
    "lock": ("ratelimit_lock_wait_seconds_count",),
    "cas": ("ratelimit_cas_attempts_count",),
}
#: The range the dashboard's $__rate_interval becomes in the check of every panel.
FINAL_WINDOW = "15m"


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def query(topology: Topology, expr: str) -> list[dict[str, object]]:
    response = httpx.get(f"{topology.prometheus_url}/api/v1/query", params={"query": expr})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def send_traffic(topology: Topology, requests: int = 40) -> None:
    """One client with a small limit and a smaller shadow one: some 200s (the last near
    the limit, some past the shadow limit), some 429s, from concurrent requests."""
    limits = [
        {
            "name": "default",
            "algorithm": "fixed_window",
            "limit": requests // 2,
            "window_seconds": 60,
        },
        {
            "name": "trial",
            "algorithm": "fixed_window",
            "limit": requests // 8,
            "window_seconds": 60,
            "shadow": True,
        },
    ]
    with httpx.Client(base_url=topology.url, timeout=30) as http:
        created = http.post(
            "/bucket",
            json={"name": f"obs-{uuid.uuid4().hex}", "limits": limits},
            headers=topology.admin,
        )
        assert created.status_code == 201, created.text
        client_id = created.json()["id"]

    async def fire() -> None:
        async with httpx.AsyncClient(base_url=topology.url, timeout=30) as http:
            await asyncio.gather(
                *(http.get("/example", headers={"X-Api-Id": client_id}) for _ in range(requests))
            )

    asyncio.run(fire())


def test_every_dashboard_query_returns_data(topology: Topology) -> None:
    """After traffic under each strategy, every panel's PromQL returns at least one finite
    number (a quantile over no traffic is NaN) from the real Prometheus."""
    for strategy in STRATEGY_NAMES:
        topology.use(strategy)
        deadline = time.monotonic() + 90
        # This strategy's own traffic seen rising by Prometheus in the last minute (not
        # an earlier test's within a longer window), in every series only it feeds.
        rising = [
            f'increase(ratelimit_decisions_total{{strategy="{strategy}",outcome="allowed"}}[1m])'
            " > 0",
            *(f"increase({series}[1m]) > 0" for series in STRATEGY_ONLY_SERIES.get(strategy, ())),
        ]
        while True:
            send_traffic(topology)
            if all(query(topology, expr) for expr in rising):
                break
            assert time.monotonic() < deadline, f"Prometheus never scraped {strategy}'s replicas"
            time.sleep(2)  # Prometheus scrapes every 5 s: poll it, with traffic meanwhile
    empty = [
        title
        for title, expr in dashboard_queries()
        if not any(
            math.isfinite(float(sample["value"][1]))  # type: ignore[index]
            # Wider than the test: the first strategy's traffic must still be in it.
            for sample in query(topology, expr.replace("$__rate_interval", FINAL_WINDOW))
        )
    ]
    assert not empty, f"panels without a single number: {empty}"


@pytest.mark.parametrize(("title", "expr"), dashboard_queries())
def test_dashboard_queries_are_valid_promql(title: str, expr: str, topology: Topology) -> None:
    """Each panel's query parses and runs in Prometheus (a typo would be an error)."""
    query(topology, expr.replace("$__rate_interval", "5m"))
