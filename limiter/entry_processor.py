"""One round trip: the rule runs inside the member that owns the client's states.

The states of every limit of a client's policy live together under its key in one of
``counter_shards`` (``RATELIMIT_COUNTER_SHARDS``, 271 by default: Hazelcast's default
partition count, so the shards and their work spread over every member's partition
threads) shard entries of the map ``{counters_map}.shards`` (OBJECT in-memory format, so
a shard is changed in place and never serialised per call). A shard is a lane
(:mod:`limiter.lanes`): a worker sends at most one call per shard at a time, and
everything queued for that shard meanwhile goes in the next call, one
:class:`ShardProcessor` carrying each client's batch. The member decides them all on the
shard's partition thread and sends one synchronous backup with the states that changed,
so the cost of a client message, a partition operation and a backup is shared by every
decision in the call, as exact and as durable as one call per key::

    request → lane of its client (crc32 of its key, mod the shard count)
      └─ one execute_on_key(shard, [key1: costs, key2: costs, ...]) in flight;
         what queues meanwhile goes in the next one

A refund (:meth:`limiter.strategy.Strategy.refund_policy`) is its own call on the same
shard entry (:class:`~limiter.processor_wire.ShardRefundProcessor`), so decisions' calls
are unchanged. What goes over the wire (ids, serialisables, the packed call, the answer's
layout) is :mod:`limiter.processor_wire`.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Sequence
from typing import Any, Unpack

from limiter.cluster import sibling_map
from limiter.policy import Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.processor_wire import (
    MEMBER_CLOCK,
    PinnedKey,
    ShardRefundProcessor,
    ShardWindowReader,
    parse_states_read,
    processor_key,
    shard_call_data,
    split_result,
)
from limiter.quota import Quota
from limiter.settings import StrategyConfig
from limiter.strategy import Elapsed, Strategy, Wiring

__all__ = [
    "ONE_SHARD",
    "EntryProcessorStrategy",
    "counter_entry",
    "shard_entry_of",
    "shard_of",
    "shards_map_name",
]


class EntryProcessorStrategy(Strategy):
    """``execute_on_key`` with :class:`ShardProcessor` on the shard of the call's keys:
    one round trip per call, for every key batch it carries.

    The member runs read-decide-write on the shard's partition thread, so no other
    operation on the shard interleaves, and writes each client's states with their expiry
    in one step. A client's key (:func:`processor_key`) holds the state of every limit of
    its policy (each tied to its limit by the limit's slot), because the member picks the
    windows and runs the whole policy rule. Clock: the
    owning member's, unless a clock was injected (tests), which is then sent with each
    request.
    """

    name = "entry_processor"

    def __init__(self, counters: Any, config: StrategyConfig, **wiring: Unpack[Wiring]) -> None:
        super().__init__(counters, config, **wiring)
        self.shard_count = config.counter_shards
        self._shards: Any = None
        self._shard_keys: dict[Hashable, PinnedKey] = {}

    @property
    def shards(self) -> Any:
        """The map of the shard entries, reached on first use."""
        if self._shards is None:
            self._shards = sibling_map(self.counters, shards_map_name(self.counters.name))
        return self._shards

    def _now_or_member_clock(self) -> int:
        return MEMBER_CLOCK if self.clock is None else self.clock()

    def _lane(self, quota: Quota) -> Hashable:
        if self.shard_count == 1:
            return ONE_SHARD
        return shard_entry_of(processor_key(quota.client_id), self.shard_count)

    async def _decide_lane(
        self, lane: Hashable, batches: Sequence[tuple[Quota, Sequence[int]]], deadline: float
    ) -> list[list[PolicyDecision]]:
        key = self._shard_keys.get(lane)
        if key is None:
            key = self._shard_keys[lane] = PinnedKey(str(lane))
        processor = shard_call_data(self._now_or_member_clock(), self.expiry_grace_ms, batches)
        result = await self.shards.execute_on_key(key, processor)
        return split_result(result, batches)

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        """One client's batch alone: a shard call carrying only it (the lanes call
        :meth:`_decide_lane` with every client of the shard instead)."""
        return (await self._decide_lane(self._lane(quota), [(quota, costs)], deadline))[0]

    async def _refund(
        self, quota: Quota, cost: int, counted: tuple[int, ...], elapsed: Elapsed, deadline: float
    ) -> bool:
        """One :class:`ShardRefundProcessor` call on the client's shard, outside the lanes:
        the member applies the rule atomically on the shard's partition thread, on its
        clock, and sends the backup; the rule makes the order against the decisions
        queued for the quota irrelevant, so the decisions' calls carry nothing more.

        The member's ``sent_ms`` is its clock less ``elapsed()``: the decision's and the
        refund's trips to the member differ by a fraction of a round trip, by which it can
        be late (see docs/design.md, Refunds)."""
        key = processor_key(quota.client_id)
        call = ShardRefundProcessor(
            self._now_or_member_clock(), elapsed(), key, quota.policy, cost, counted
        )
        await self.shards.execute_on_key(shard_entry_of(key, self.shard_count), call)
        return True

    async def stored_states(
        self, client_id: str, policy: Policy
    ) -> tuple[tuple[LimitState | None, ...], int]:
        """The live states, read on the owner of the client's shard, with the time the
        owner decides with: the member's clock at the read, or the injected clock, which
        decisions send instead."""
        key = processor_key(client_id)
        answer = await self.shards.execute_on_key(
            shard_entry_of(key, self.shard_count), ShardWindowReader(key)
        )
        states, member_now = parse_states_read(answer, policy)
        return states, member_now if self.clock is None else self.clock()


def shards_map_name(counters_map: str) -> str:
    """The map of the shard layout, configured apart (OBJECT format, no map-level TTL)."""
    return f"{counters_map}.shards"


def shard_of(key: str, shard_count: int) -> int:
    """The shard of a client's key: the same in every replica (``hash()`` is per process)."""
    return zlib.crc32(key.encode()) % shard_count


#: The entry of every window when there is one shard (``RATELIMIT_COUNTER_SHARDS=1``).
ONE_SHARD = "shard-0-of-1"


def shard_entry_of(key: str, shard_count: int) -> str:
    """The entry of the shard holding the client key ``key``; the count is part of it, so
    replicas that disagree on the count never share an entry laid out for another."""
    return f"shard-{shard_of(key, shard_count)}-of-{shard_count}"


def counter_entry(counters_map: str, shard_count: int, client_id: str) -> tuple[str, str]:
    """The map and key of the shard entry that holds a client's states."""
    return shards_map_name(counters_map), shard_entry_of(processor_key(client_id), shard_count)
