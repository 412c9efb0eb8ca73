"""The entry processor's wire format: what a replica sends a member and how it reads the
answer, kept apart from the strategy that decides when to send it.

The other half is Java (``hazelcast/src/main/java/ratelimit/processor``): the factory and
class ids, each serialisable's field order and the answer's layout must agree on both
sides. The numbers of that contract are written once, in
``tests/vectors/processor_wire.csv``: ``tests/unit/test_processor_wire.py`` checks these
constants and the factory registration in ``hazelcast/hazelcast.xml`` against it, and
``WireContractTest.java`` the Java constants.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)
from hazelcast.serialization.data import Data

from limiter.quota import Quota
from limiter.rule import Decision, Reason, WindowState

__all__ = [
    "MEMBER_CLOCK",
    "PROCESSOR_FACTORY_ID",
    "RESULT_HEADER",
    "RESULT_STRIDE",
    "PinnedKey",
    "ShardProcessor",
    "ShardWindowReader",
    "parse_result",
    "parse_window_read",
    "processor_key",
    "shard_call_data",
    "split_result",
]

#: The contract's numbers (tests/vectors/processor_wire.csv).
PROCESSOR_FACTORY_ID = 7301
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


class ShardProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.ShardProcessor``: the batches of several
    windows of one shard, each the costs of every request queued for the window, decided
    in order by one execution. The client only ever sends it, so it needs no factory on
    this side.

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
    """``ratelimit.processor.ShardWindowReader``: one window of a shard, read on its owner,
    with the owner's clock at the read (:func:`parse_window_read`)."""

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


def split_result(result: Sequence[int], batch_sizes: Sequence[int]) -> list[list[Decision]]:
    """A shard call's answer, one list of decisions per batch of ``batch_sizes`` in order
    (one per window the call carried)."""
    answers = []
    at = 0
    for size in batch_sizes:
        answers.append(parse_result(result, size, at))
        at += RESULT_HEADER + RESULT_STRIDE * size
    if at != len(result):
        raise ValueError(f"processor answered {len(result)} values, expected {at}")
    return answers


def parse_window_read(result: Sequence[int]) -> tuple[WindowState | None, int | None]:
    """A :class:`ShardWindowReader`'s answer: the live window (None when there is none)
    and the owner's clock at the read, ``[start, count, now]`` or ``[now]``. A member
    built before the clock was added answers ``[start, count]`` or ``[]``: no clock."""
    values = list(result)
    if len(values) == 3:
        return WindowState(int(values[0]), int(values[1])), int(values[2])
    if len(values) == 1:
        return None, int(values[0])
    if len(values) == 2:
        return WindowState(int(values[0]), int(values[1])), None
    if not values:
        return None, None
    raise ValueError(f"window reader answered {len(values)} values")


def processor_key(client_id: str, window_seconds: int) -> str:
    """The entry processor's counter key: one per client and window length, holding
    ``long[]{window_start_ms, count}``."""
    return f"{client_id}:{window_seconds}"
