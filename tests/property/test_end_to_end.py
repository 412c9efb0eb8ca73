"""End to end: hypothesis-chosen bursts of concurrent HTTP requests through the real nginx
to the 3 real replicas and the real cluster admit exactly min(requests, limit) per
client, for each strategy (the replicas are restarted with the switch)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter

import httpx
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from limiter import STRATEGY_NAMES
from tests.conftest import Topology

WINDOW_SECONDS = 3600


async def burst(
    topology: Topology, plans: list[tuple[int, int]], concurrency: int, order: random.Random
) -> tuple[list[tuple[str, int, int]], dict[str, Counter[int]], bool]:
    """Creates one client per plan, fires every request, and returns what came back and
    whether the burst stayed inside one window."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=topology.url, limits=limits, timeout=60) as http:
        clients = []
        for limit, requests in plans:
            created = await http.post(
                "/bucket",
                json={
                    "name": f"e2e-{uuid.uuid4().hex}",
                    "limit": limit,
                    "window_seconds": WINDOW_SECONDS,
                },
                headers=topology.admin,
            )
            assert created.status_code == 201, created.text
            clients.append((created.json()["id"], limit, requests))
        pending = [client_id for client_id, _, count in clients for _ in range(count)]
        order.shuffle(pending)
        statuses: dict[str, Counter[int]] = {client_id: Counter() for client_id, _, _ in clients}

        async def worker() -> None:
            while pending:
                client_id = pending.pop()
                response = await http.get("/example", headers={"X-Api-Id": client_id})
                statuses[client_id][response.status_code] += 1

        window_before = time.time() // WINDOW_SECONDS
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        one_window = time.time() // WINDOW_SECONDS == window_before
        for client_id, _, _ in clients:
            await http.delete(f"/bucket/{client_id}", headers=topology.admin)
        return clients, statuses, one_window


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_bursts_through_nginx_admit_exactly(strategy: str, topology: Topology) -> None:
    """Through nginx and 3 replicas, each client gets exactly min(requests, limit) 200s and
    a 429 for every other request."""
    topology.use(strategy)

    @given(
        plans=st.lists(st.tuples(st.integers(1, 20), st.integers(1, 50)), min_size=1, max_size=3),
        concurrency=st.integers(1, 48),
        order=st.randoms(use_true_random=False),
    )
    def admitted_exactly(
        plans: list[tuple[int, int]], concurrency: int, order: random.Random
    ) -> None:
        clients, statuses, one_window = asyncio.run(burst(topology, plans, concurrency, order))
        if not one_window:
            reject()  # the burst straddled an hour boundary: two windows, another count
        for client_id, limit, requests in clients:
            seen = statuses[client_id]
            assert set(seen) <= {200, 429}, f"{strategy}: unexpected statuses {dict(seen)}"
            assert seen[200] == min(requests, limit), (
                f"{strategy}: {seen[200]} admitted of {requests}, limit {limit}"
            )

    admitted_exactly()
