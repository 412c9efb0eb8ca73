"""A separate OS process with its own Hazelcast client, firing bursts on request.

Started by a ProcessPoolExecutor (spawn): :func:`start` runs once per process and
connects; :func:`run_burst` runs one burst of concurrent asyncio tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any

from api.settings import Settings
from limiter import Alignment, ClusterLink, connect
from tests.loop import LoopThread
from tests.property.contenders import build

_loop: LoopThread | None = None
_link: ClusterLink | None = None
_settings: Settings | None = None


@dataclasses.dataclass(frozen=True)
class Burst:
    strategy: str
    counters_map: str
    #: (client id, limit, window seconds, cost), one per request, in firing order.
    requests: tuple[tuple[str, int, int, int], ...]
    tasks: int
    now_ms: int
    alignment: Alignment
    #: Wall-clock time at which every process fires, so their bursts overlap.
    fire_at: float


def start(settings: dict[str, Any]) -> None:
    global _loop, _link, _settings
    _settings = Settings(**settings)
    _loop = LoopThread()
    _link = _loop.run(connect(_settings))


def ping() -> bool:
    return _link is not None and _link.connected


def run_burst(burst: Burst) -> dict[str, int]:
    assert _loop is not None
    return _loop.run(_burst(burst))


async def _burst(burst: Burst) -> dict[str, int]:
    assert _link is not None and _settings is not None
    counters = await _link.get_map(burst.counters_map)
    strategy = build(burst.strategy, _settings, counters, lambda: burst.now_ms)
    pending = list(reversed(burst.requests))
    admitted: Counter[str] = Counter()

    async def task() -> None:
        while pending:
            client, limit, window, cost = pending.pop()
            decision = await strategy.decide(client, limit, window, cost, alignment=burst.alignment)
            admitted[client] += decision.allowed

    delay = burst.fire_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)  # start together with the other processes
    try:
        await asyncio.gather(*(task() for _ in range(burst.tasks)))
    finally:
        await strategy.close()
    return dict(admitted)
