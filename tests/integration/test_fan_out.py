"""The entry processor's fan-out on the real cluster: one ``execute_on_keys`` call carries a
worker's batch over several shard entries, decided on their owners, and it is exact."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from typing import Any

from api.settings import Settings
from limiter import Alignment, EntryProcessorStrategy, Policy, create_strategy
from limiter.entry_processor import shard_entry_of
from tests.loop import LoopThread

#: Windows that start at a client's first request: no window edge falls inside the test.
FIRST = Alignment.FIRST_REQUEST
SHARDS = 16
CLIENTS = 48
LIMIT = 7
#: Requests per client from each worker, all at once.
REQUESTS = 12


class CountingShards:
    """The real shards map, with the number of shard entries of each fan-out call
    recorded (every call still goes to the cluster)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.fan_out_keys: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def execute_on_keys(self, keys: Any, processor: Any) -> Any:
        self.fan_out_keys.append(len(keys))
        return await self.real.execute_on_keys(keys, processor)


def test_batches_over_several_shards_in_one_call_admit_exactly_each_limit(
    counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """Two workers flood 48 clients (limit 7) spread over 16 shard entries at once, 12
    requests per client each: calls carry several shard entries, exactly 7 requests of
    each client are admitted, and what the members store is each client's count of 7."""
    settings = dataclasses.replace(base_settings, counter_shards=SHARDS, shard_calls="fan_out")
    workers = [create_strategy(settings, counters, name="entry_processor") for _ in range(2)]
    spies = []
    for worker in workers:
        assert isinstance(worker, EntryProcessorStrategy) and worker.fan_out
        spy = CountingShards(worker.shards)
        worker._shards = spy
        spies.append(spy)
    run = uuid.uuid4().hex[:8]
    clients = [f"fan-{run}-{i}" for i in range(CLIENTS)]
    assert len({shard_entry_of(f"{c}:p", SHARDS) for c in clients}) > SHARDS // 2

    async def flood() -> Counter[str]:
        requests = [
            (client, worker.decide(client, LIMIT, 60, alignment=FIRST))
            for _ in range(REQUESTS)
            for client in clients
            for worker in workers
        ]
        decisions = await asyncio.gather(*(call for _, call in requests))
        admitted = Counter(
            client
            for (client, _), decision in zip(requests, decisions, strict=True)
            if decision.allowed
        )
        for worker in workers:
            await worker.close()
        return admitted

    admitted = loop.run(flood())
    assert admitted == dict.fromkeys(clients, LIMIT)
    calls = [keys for spy in spies for keys in spy.fan_out_keys]
    assert calls, "no batch went out as a fan-out call"
    assert max(calls) > 2, f"shard entries per fan-out call: {calls}"

    async def stored() -> list[int]:
        policy = Policy.single(LIMIT, 60, FIRST)
        reads = [workers[0].stored_states(c, policy) for c in clients]
        return [getattr(states[0], "count", None) for states, _ in await asyncio.gather(*reads)]

    assert loop.run(stored()) == [LIMIT] * CLIENTS
