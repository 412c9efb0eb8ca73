"""One round trip: the rule runs inside the member that owns the client's counter.

Two layouts, chosen by ``counter_shards`` (``RATELIMIT_COUNTER_SHARDS``):

- **shards** (the default, 1): every client window lives in one of a few shard entries
  of the map ``{counters_map}.shards`` (OBJECT in-memory format, so a shard is changed in
  place and never serialised per call). A shard is a lane (:mod:`limiter.lanes`): a
  worker sends at most one call per shard at a time, and everything queued for that
  shard meanwhile goes in the next call, one :class:`ShardProcessor` carrying each key's
  batch. The member decides them all on the shard's partition thread and sends one
  synchronous backup with the windows that changed, so the cost of a client message, a
  partition operation and a backup is shared by every decision in the call, as exact and
  as durable as one call per key::

      request → lane of its key (crc32 of the key, mod the shard count)
        └─ one execute_on_key(shard, [key1: costs, key2: costs, ...]) in flight;
           what queues meanwhile goes in the next one

- **one entry per key** (0): ``{client}:{window}`` in ``counters_map`` holding
  ``long[]{window start, count}`` with its TTL, one :class:`FixedWindowProcessor` call
  per key batch.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Hashable, Sequence
from typing import Any, Unpack

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)
from hazelcast.serialization.data import Data

from limiter.cluster import sibling_map
from limiter.quota import Quota
from limiter.rule import Alignment, Decision, Reason, WindowState
from limiter.settings import StrategyConfig
from limiter.strategy import Strategy, Wiring

__all__ = [
    "PROCESSOR_FACTORY_ID",
    "EntryProcessorStrategy",
    "FixedWindowProcessor",
    "PinnedKey",
    "ShardProcessor",
    "ShardWindowReader",
    "counter_entry",
    "shard_call_data",
    "shard_of",
]

#: Must match ProcessorFactory.java and hazelcast.xml.
PROCESSOR_FACTORY_ID = 7301
FIXED_WINDOW_PROCESSOR_ID = 1
SHARD_PROCESSOR_ID = 3
SHARD_WINDOW_READER_ID = 6
#: Sent instead of a time: let the member's clock pick the window.
MEMBER_CLOCK = -1
#: The result is ``[limit, reset_after_ms]`` then ``allowed, remaining, reason`` per request.
RESULT_HEADER = 2
RESULT_STRIDE = 3
#: A reason by its number on the wire (a dict lookup, cheaper than calling the enum).
REASONS = {reason.value: reason for reason in Reason}
#: The serializer type ids of Hazelcast's serialised form (``Data``) that a shard call
#: uses: an ``IdentifiedDataSerializable`` and a string.
IDENTIFIED_TYPE_ID = -2
STRING_TYPE_ID = -11
#: ``Data``: partition hash (0: hash the bytes) and serializer type id, then what the
#: serializer writes, all big-endian (the client's default byte order, which
#: :func:`limiter.cluster.connect` keeps): for a :class:`ShardProcessor`, "identified",
#: factory and class id, then its own fields up to the count of windows.
_SHARD_CALL_HEAD = struct.Struct(">iibiiqqi")
_STRING_HEAD = struct.Struct(">iii")


class FixedWindowProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.FixedWindowProcessor``: only its fields.

    It carries a batch: the costs of every request queued for the key, decided in order
    by one execution. The client only ever sends it, so it needs no factory on this side.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: int,
        alignment: Alignment,
        now_ms: int,
        expiry_grace_ms: int,
        costs: Sequence[int],
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.alignment = alignment
        self.now_ms = now_ms
        self.expiry_grace_ms = expiry_grace_ms
        self.costs = list(costs)

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_long(self.limit)
        output.write_long(self.window_seconds)
        output.write_int(self.alignment.wire_id)
        output.write_long(self.now_ms)
        output.write_long(self.expiry_grace_ms)
        output.write_long_array(self.costs)

    def read_data(self, inp: ObjectDataInput) -> None:
        self.limit = inp.read_long()
        self.window_seconds = inp.read_long()
        self.alignment = list(Alignment)[inp.read_int()]
        self.now_ms = inp.read_long()
        self.expiry_grace_ms = inp.read_long()
        self.costs = inp.read_long_array()

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return FIXED_WINDOW_PROCESSOR_ID


class ShardProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.ShardProcessor``: the batches of several
    windows of one shard, each as :class:`FixedWindowProcessor` carries one.

    The strategy sends the same bytes built faster by :func:`shard_call_data`; this class
    is the format as the client's serializer writes it, which they are checked against.
    """

    def __init__(
        self,
        now_ms: int,
        expiry_grace_ms: int,
        windows: Sequence[tuple[Quota, Sequence[int]]],
    ) -> None:
        self.now_ms = now_ms
        self.expiry_grace_ms = expiry_grace_ms
        self.windows = windows

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_long(self.now_ms)
        output.write_long(self.expiry_grace_ms)
        output.write_int(len(self.windows))
        for quota, costs in self.windows:
            output.write_string(processor_key(quota.client_id, quota.window_seconds))
            output.write_long(quota.limit)
            output.write_long(quota.window_seconds)
            output.write_int(quota.alignment.wire_id)
            output.write_long_array(costs)

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return SHARD_PROCESSOR_ID


class ShardWindowReader(IdentifiedDataSerializable):
    """``ratelimit.processor.ShardWindowReader``: one window of a shard, read on its owner."""

    def __init__(self, key: str) -> None:
        self.key = key

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_string(self.key)

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return SHARD_WINDOW_READER_ID


def shard_call_data(
    now_ms: int, expiry_grace_ms: int, windows: Sequence[tuple[Quota, Sequence[int]]]
) -> Data:
    """``ShardProcessor(now_ms, expiry_grace_ms, windows)`` serialised, byte for byte as
    the client's serializer writes it (tests/unit/test_shards.py compares the two).

    The hottest serialisation of the service: the client's writer makes a dozen Python
    calls per window and allocates a buffer per call; this is one ``struct`` pack per
    window, under half the time for the three or so windows a call carries.
    """
    parts = [
        _SHARD_CALL_HEAD.pack(
            0,
            IDENTIFIED_TYPE_ID,
            1,
            PROCESSOR_FACTORY_ID,
            SHARD_PROCESSOR_ID,
            now_ms,
            expiry_grace_ms,
            len(windows),
        )
    ]
    for quota, costs in windows:
        key = processor_key(quota.client_id, quota.window_seconds).encode()
        parts.append(
            struct.pack(
                f">i{len(key)}sqqii{len(costs)}q",
                len(key),
                key,
                quota.limit,
                quota.window_seconds,
                quota.alignment.wire_id,
                len(costs),
                *costs,
            )
        )
    return Data(b"".join(parts))  # type: ignore[no-untyped-call]  # untyped upstream


class PinnedKey(Data):
    """A string key serialised once, with its partition hash worked out once.

    The client serialises a call's key and murmur-hashes it (in Python) on every call;
    a shard's entry name is the same for every call of its lane.
    """

    def __init__(self, key: str) -> None:
        encoded = key.encode()
        super().__init__(_STRING_HEAD.pack(0, STRING_TYPE_ID, len(encoded)) + encoded)  # type: ignore[no-untyped-call]  # untyped upstream
        self._partition_hash: int = super().get_partition_hash()  # type: ignore[no-untyped-call]  # untyped upstream

    def get_partition_hash(self) -> int:
        return self._partition_hash


def parse_result(result: Sequence[int], requests: int, start: int = 0) -> list[Decision]:
    """One batch's part of the member's ``long[]`` answer, from ``start``, as one decision
    per request."""
    end = start + RESULT_HEADER + RESULT_STRIDE * requests
    if len(result) < end:
        raise ValueError(f"processor answered {len(result)} values, short of {end}")
    limit, reset_after_ms = result[start], result[start + 1]
    try:
        return [
            Decision(bool(result[i]), limit, result[i + 1], reset_after_ms, REASONS[result[i + 2]])
            for i in range(start + RESULT_HEADER, end, RESULT_STRIDE)
        ]
    except KeyError as unknown:
        raise ValueError(f"processor answered an unknown reason {unknown}") from None


class EntryProcessorStrategy(Strategy):
    """``execute_on_key`` with :class:`ShardProcessor` (or :class:`FixedWindowProcessor`
    with one entry per key): one round trip per call, for every key batch it carries.

    The member runs read-decide-write on the entry's partition thread, so no other
    operation on the entry interleaves, and writes value and expiry in one step. A window
    is per client and window length (:func:`processor_key`) and holds the window's start
    and count, because the window is picked on the member. Clock: the owning member's,
    unless a clock was injected (tests), which is then sent with each request.
    """

    name = "entry_processor"

    def __init__(self, counters: Any, config: StrategyConfig, **wiring: Unpack[Wiring]) -> None:
        super().__init__(counters, config, **wiring)
        self.shard_count = config.counter_shards
        self._shards: Any = None
        self._shard_keys: dict[Hashable, PinnedKey] = {}

    @property
    def shards(self) -> Any:
        """The map of the shard layout (None with one entry per key), reached on first use."""
        if not self.shard_count:
            return None
        if self._shards is None:
            self._shards = sibling_map(self.counters, shards_map_name(self.counters.name))
        return self._shards

    def _now_or_member_clock(self) -> int:
        return MEMBER_CLOCK if self.clock is None else self.clock()

    def _lane(self, quota: Quota) -> Hashable:
        if not self.shard_count:
            return quota
        if self.shard_count == 1:
            return ONE_SHARD
        key = processor_key(quota.client_id, quota.window_seconds)
        return shard_entry_of(key, self.shard_count)

    async def _decide_lane(
        self, lane: Hashable, batches: Sequence[tuple[Quota, Sequence[int]]], deadline: float
    ) -> list[list[Decision]]:
        if not self.shard_count:
            return await super()._decide_lane(lane, batches, deadline)
        key = self._shard_keys.get(lane)
        if key is None:
            key = self._shard_keys[lane] = PinnedKey(str(lane))
        processor = shard_call_data(self._now_or_member_clock(), self.expiry_grace_ms, batches)
        result = await self.shards.execute_on_key(key, processor)
        return split_result(result, [len(costs) for _, costs in batches])

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[Decision]:
        processor = FixedWindowProcessor(
            quota.limit,
            quota.window_seconds,
            quota.alignment,
            self._now_or_member_clock(),
            self.expiry_grace_ms,
            costs,
        )
        result = await self.counters.execute_on_key(
            processor_key(quota.client_id, quota.window_seconds), processor
        )
        return split_result(result, [len(costs)])[0]

    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        key = processor_key(client_id, window_seconds)
        if self.shard_count:
            stored = await self.shards.execute_on_key(
                shard_entry_of(key, self.shard_count), ShardWindowReader(key)
            )
        else:
            stored = await self.counters.get(key)
        if isinstance(stored, list) and len(stored) == 2:
            return WindowState(int(stored[0]), int(stored[1]))
        return None


def split_result(result: Sequence[int], batch_sizes: Sequence[int]) -> list[list[Decision]]:
    """A processor's answer, one list of decisions per batch of ``batch_sizes`` in order
    (one batch for a key's processor, one per window for a shard's)."""
    answers = []
    at = 0
    for size in batch_sizes:
        answers.append(parse_result(result, size, at))
        at += RESULT_HEADER + RESULT_STRIDE * size
    if at != len(result):
        raise ValueError(f"processor answered {len(result)} values, expected {at}")
    return answers


def shards_map_name(counters_map: str) -> str:
    """The map of the shard layout, configured apart (OBJECT format, no map-level TTL)."""
    return f"{counters_map}.shards"


def shard_of(key: str, shard_count: int) -> int:
    """The shard of a window key: the same in every replica (``hash()`` is per process)."""
    return zlib.crc32(key.encode()) % shard_count


#: The entry of every window when there is one shard (the default).
ONE_SHARD = "shard-0-of-1"


def shard_entry_of(key: str, shard_count: int) -> str:
    """The entry of the shard holding the window ``key``; the count is part of it, so
    replicas that disagree on the count never share an entry laid out for another."""
    return f"shard-{shard_of(key, shard_count)}-of-{shard_count}"


def counter_entry(
    counters_map: str, shard_count: int, client_id: str, window_seconds: int
) -> tuple[str, str]:
    """The map and key of the entry that holds a client's window in the entry processor's
    layout (``shard_count`` 0: one entry per key)."""
    key = processor_key(client_id, window_seconds)
    if not shard_count:
        return counters_map, key
    return shards_map_name(counters_map), shard_entry_of(key, shard_count)


def processor_key(client_id: str, window_seconds: int) -> str:
    """The entry processor's counter key: one per client and window length, holding
    ``long[]{window_start_ms, count}``."""
    return f"{client_id}:{window_seconds}"
