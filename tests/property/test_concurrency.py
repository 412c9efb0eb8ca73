"""Concurrency: bursts from many asyncio tasks in several OS processes, each process with
its own client, admit exactly min(requests, limit // cost) per client and window, for
both window alignments."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from api.settings import Settings
from limiter import STRATEGY_NAMES, Alignment, ClusterLink
from stack import Stack
from tests.loop import LoopThread
from tests.property import burst_worker
from tests.property.contenders import BROKEN

MAX_PROCESSES = 3

client_plans = st.lists(
    st.tuples(st.integers(1, 25), st.integers(1, 3), st.integers(1, 60)),  # limit, cost, requests
    min_size=1,
    max_size=3,
)


@pytest.fixture(scope="session")
def workers(cluster: Stack, base_settings: Settings) -> Iterator[ProcessPoolExecutor]:
    pool = ProcessPoolExecutor(
        MAX_PROCESSES,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=burst_worker.start,
        initargs=(dataclasses.asdict(base_settings),),
    )
    try:
        assert all(pool.submit(burst_worker.ping).result(60) for _ in range(MAX_PROCESSES))
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def exact_admission_property(
    strategy: str,
    alignment: Alignment,
    workers: ProcessPoolExecutor,
    link: ClusterLink,
    loop: LoopThread,
    **overrides: Any,
) -> Callable[[], None]:
    @settings(**overrides)
    @given(
        plans=client_plans,
        window=st.sampled_from([1, 60, 3600]),
        processes=st.integers(1, MAX_PROCESSES),
        tasks=st.integers(1, 64),
        now_ms=st.integers(1_700_000_000_000, 1_900_000_000_000),
        order=st.randoms(use_true_random=False),
    )
    def admitted_exactly(
        plans: list[tuple[int, int, int]],
        window: int,
        processes: int,
        tasks: int,
        now_ms: int,
        order: Any,
    ) -> None:
        counters_map = f"ratelimit.counters.{uuid.uuid4().hex}"
        run = uuid.uuid4().hex[:8]
        requests = [
            (f"client-{run}-{i}", limit, window, cost)
            for i, (limit, cost, count) in enumerate(plans)
            for _ in range(count)
        ]
        order.shuffle(requests)
        fire_at = time.time() + 0.2
        bursts = [
            burst_worker.Burst(
                strategy,
                counters_map,
                tuple(requests[p::processes]),
                tasks,
                now_ms,
                alignment,
                fire_at,
            )
            for p in range(processes)
        ]
        try:
            results = [
                f.result(120) for f in [workers.submit(burst_worker.run_burst, b) for b in bursts]
            ]
        finally:
            loop.run(_destroy(link, counters_map))
        for i, (limit, cost, count) in enumerate(plans):
            client = f"client-{run}-{i}"
            admitted = sum(result.get(client, 0) for result in results)
            expected = min(count, limit // cost)
            assert admitted == expected, (
                f"{strategy}, {alignment}: {client} admitted {admitted} of {count} requests "
                f"of cost {cost}, limit {limit}: expected exactly {expected} "
                f"({processes} processes x {tasks} tasks)"
            )

    return admitted_exactly


async def _destroy(link: ClusterLink, name: str) -> None:
    await (await link.get_map(name)).destroy()


@pytest.mark.parametrize("alignment", Alignment)
@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_concurrent_bursts_admit_exactly(
    strategy: str,
    alignment: Alignment,
    workers: ProcessPoolExecutor,
    link: ClusterLink,
    loop: LoopThread,
) -> None:
    """Under concurrent tasks in several processes, each client gets exactly its share."""
    exact_admission_property(strategy, alignment, workers, link, loop)()


def test_the_property_catches_a_racy_strategy(
    workers: ProcessPoolExecutor, link: ClusterLink, loop: LoopThread
) -> None:
    """The same property fails for plain get-then-set: it over-admits under concurrency."""
    racy = exact_admission_property(
        BROKEN,
        Alignment.FIRST_REQUEST,
        workers,
        link,
        loop,
        max_examples=60,
        phases=[Phase.generate],
    )
    with pytest.raises(BaseException) as caught:
        racy()
    failures = [caught.value]
    if isinstance(caught.value, BaseExceptionGroup):
        failures = list(caught.value.exceptions)
    assert any(isinstance(f, AssertionError) and "expected exactly" in str(f) for f in failures), (
        caught.value
    )
