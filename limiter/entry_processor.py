"""One round trip: the rule runs inside the members that own the clients' states.

The states of every limit of a client's policy live together under its key in one of
``counter_shards`` (``RATELIMIT_COUNTER_SHARDS``) shard entries of the map
``{counters_map}.shards`` (OBJECT in-memory format, so a shard is changed in place and
never serialised per call): one by default, the fastest on a small machine. With several,
the shards and their work spread over every member's partition threads as the partitions
do, and a member joining or leaving moves a few small entries, not all windows.

How a worker calls the cluster (``RATELIMIT_SHARD_CALLS``):

- ``per_shard`` (the default): the lane (:mod:`limiter.lanes`) is the shard entry, one
  ``execute_on_key`` per shard in flight per worker, each answered after its synchronous
  backup, so a member's death loses no answered count; with many shards, more calls,
  each carrying less.
- ``fan_out``: the lane is the worker, not the shard.
  Everything the worker queued while its last call ran goes in ONE call,
  ``execute_on_keys(shard keys the batch touches, ShardFanOutProcessor)``: the member the
  client asks fans it out to the owners (one operation per member, one per partition, on
  the partition threads), each shard entry is decided by the one-shard rule, and the
  answers come back together. Why the lane is the worker: the replicas' Python is what a
  2-core box runs out of first, and it pays per call, not per decision; with a lane per
  shard and hundreds of shards, each call carried about one decision. A batch that touches
  a single shard entry (one shard configured, or a quiet worker) is one ``execute_on_key``
  with :class:`ShardProcessor` instead: routed straight to the owner, and answered after
  its synchronous backup. A fan-out's backups are asynchronous (Hazelcast's
  ``MultipleEntryOperation``): a member killed between answering and its backup leaving
  can lose that instant's admissions (docs/design.md, "One call per batch").

::

    fan_out:   request → the worker's lane
                 └─ one execute_on_keys([shard-i, shard-j, ...],
                        {shard-i: [key1: costs, ...], shard-j: [...]}) in flight
    per_shard: request → lane of its shard (crc32 of its client key, mod the shard count)
                 └─ one execute_on_key(shard, [key1: costs, key2: costs, ...]) in flight

Either way a shard entry's part is decided on its partition thread, atomically, with the
states that changed sent to its backup, so the cost of a client message is shared by every
decision in the call.

A refund (:meth:`limiter.strategy.Strategy.refund_policy`) is its own call on the client's
shard entry (:class:`~limiter.processor_wire.ShardRefundProcessor`), as is a read of the
stored states, so decisions' calls are unchanged. What goes over the wire (ids,
serialisables, the packed calls, the answers' layout) is :mod:`limiter.processor_wire`.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Hashable, Sequence
from typing import Any, Unpack

from limiter.call_ids import CallIds, send_until
from limiter.cluster import sibling_map
from limiter.policy import Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.processor_wire import (
    MEMBER_CLOCK,
    PinnedKey,
    ShardBatches,
    ShardRefundProcessor,
    ShardWindowReader,
    fan_out_call_data,
    parse_states_read,
    processor_key,
    shard_call_data,
    split_fan_out_result,
    split_result,
)
from limiter.quota import Quota
from limiter.settings import StrategyConfig
from limiter.strategy import Elapsed, Strategy, Wiring

__all__ = [
    "EVERY_SHARD",
    "ONE_SHARD",
    "EntryProcessorStrategy",
    "counter_entry",
    "shard_entry_of",
    "shard_of",
    "shards_map_name",
]


class EntryProcessorStrategy(Strategy):
    """One cluster call per batch: ``execute_on_keys`` with :class:`ShardFanOutProcessor`
    over the shard entries a batch touches, or ``execute_on_key`` with
    :class:`ShardProcessor` on the one it touches (see the module's docstring).

    The member runs read-decide-write on each shard's partition thread, so no other
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
        self.fan_out = config.shard_calls == "fan_out" and self.shard_count > 1
        self._shards: Any = None
        self._shard_keys: dict[str, PinnedKey] = {}
        #: This worker's call ids: every call that can change a shard entry carries one.
        self.call_ids = CallIds()

    @property
    def shards(self) -> Any:
        """The map of the shard entries, reached on first use."""
        if self._shards is None:
            self._shards = sibling_map(self.counters, shards_map_name(self.counters.name))
        return self._shards

    def _now_or_member_clock(self) -> int:
        return MEMBER_CLOCK if self.clock is None else self.clock()

    def _pinned(self, shard: str) -> PinnedKey:
        key = self._shard_keys.get(shard)
        if key is None:
            key = self._shard_keys[shard] = PinnedKey(shard)
        return key

    def _shard_entry(self, quota: Quota) -> str:
        if self.shard_count == 1:
            return ONE_SHARD
        return _client_shard_entry(quota.client_id, self.shard_count)

    def _lane(self, quota: Quota) -> Hashable:
        return EVERY_SHARD if self.fan_out else self._shard_entry(quota)

    async def _decide_lane(
        self, lane: Hashable, batches: Sequence[tuple[Quota, Sequence[int]]], deadline: float
    ) -> list[list[PolicyDecision]]:
        if lane != EVERY_SHARD:
            return await self._shard_call(str(lane), batches, deadline)
        by_shard: dict[str, list[int]] = {}
        for at, (quota, _) in enumerate(batches):
            by_shard.setdefault(self._shard_entry(quota), []).append(at)
        if len(by_shard) == 1:
            return await self._shard_call(next(iter(by_shard)), batches, deadline)
        shards: list[ShardBatches] = [
            (shard, [batches[at] for at in ats]) for shard, ats in by_shard.items()
        ]
        processor = fan_out_call_data(
            self._now_or_member_clock(), self.expiry_grace_ms, self.call_ids.next(), shards
        )
        keys = [self._pinned(shard) for shard in by_shard]
        entries = await send_until(deadline, lambda: self.shards.execute_on_keys(keys, processor))
        answers: list[list[PolicyDecision]] = [[] for _ in batches]
        order = (at for ats in by_shard.values() for at in ats)
        for at, decisions in zip(order, split_fan_out_result(entries, shards), strict=True):
            answers[at] = decisions
        return answers

    async def _shard_call(
        self, shard: str, batches: Sequence[tuple[Quota, Sequence[int]]], deadline: float
    ) -> list[list[PolicyDecision]]:
        """One ``execute_on_key`` on one shard entry, carrying every batch given, sent again
        (the same call, the same id) while its fate is unknown and ``deadline`` allows
        (:func:`limiter.call_ids.send_until`): the entry answers a call it already applied
        as it did then, so a call whose owner died before answering counts once."""
        processor = shard_call_data(
            self._now_or_member_clock(), self.expiry_grace_ms, self.call_ids.next(), batches
        )
        key = self._pinned(shard)
        result = await send_until(deadline, lambda: self.shards.execute_on_key(key, processor))
        return split_result(result, batches)

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        """One client's batch alone: a shard call carrying only it (the lanes call
        :meth:`_decide_lane` with every client of the lane instead)."""
        return (await self._shard_call(self._shard_entry(quota), [(quota, costs)], deadline))[0]

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
        entry = shard_entry_of(key, self.shard_count)
        call_id = CallIds.apart()  # refunds run beside the lanes' calls, and each other

        def send() -> Any:
            # Built at each send, so elapsed() counts the wait before it; the same id, so a
            # refund already applied is answered, not applied twice.
            call = ShardRefundProcessor(
                self._now_or_member_clock(), elapsed(), call_id, key, quota.policy, cost, counted
            )
            return self.shards.execute_on_key(entry, call)

        await send_until(deadline, send)
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
#: A worker's one lane when its calls fan out over the shards (``RATELIMIT_SHARD_CALLS``).
EVERY_SHARD = "every-shard"


@functools.lru_cache(maxsize=65536)
def _client_shard_entry(client_id: str, shard_count: int) -> str:
    """:func:`shard_entry_of` a client, worked out once per client (every batch asks)."""
    return shard_entry_of(processor_key(client_id), shard_count)


def shard_entry_of(key: str, shard_count: int) -> str:
    """The entry of the shard holding the client key ``key``; the count is part of it, so
    replicas that disagree on the count never share an entry laid out for another."""
    return f"shard-{shard_of(key, shard_count)}-of-{shard_count}"


def counter_entry(counters_map: str, shard_count: int, client_id: str) -> tuple[str, str]:
    """The map and key of the shard entry that holds a client's states."""
    return shards_map_name(counters_map), shard_entry_of(processor_key(client_id), shard_count)
