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

import functools
import struct
from collections.abc import Sequence

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)
from hazelcast.serialization.data import Data

from limiter.call_ids import CallId
from limiter.policy import Limit, Policy
from limiter.policy_rule import LimitState, PolicyDecision, admitted, combine, state_of
from limiter.quota import Quota
from limiter.rule import Decision, Reason

__all__ = [
    "MEMBER_CLOCK",
    "NO_RETRY",
    "PROCESSOR_FACTORY_ID",
    "RESULT_STRIDE_PER_LIMIT",
    "PinnedKey",
    "ShardBatches",
    "ShardFanOutProcessor",
    "ShardProcessor",
    "ShardRefundProcessor",
    "ShardWindowReader",
    "fan_out_call_data",
    "parse_result",
    "parse_states_read",
    "processor_key",
    "shard_call_data",
    "split_fan_out_result",
    "split_result",
]

#: The contract's numbers (tests/vectors/processor_wire.csv).
PROCESSOR_FACTORY_ID = 7301
SHARD_PROCESSOR_ID = 14
SHARD_WINDOW_READER_ID = 10
SHARD_REFUND_PROCESSOR_ID = 19
SHARD_FAN_OUT_PROCESSOR_ID = 16
#: Sent instead of a time: let the member's clock pick the window.
MEMBER_CLOCK = -1
#: The answer holds, per window, per request, per limit: allowed (1 or 0), remaining,
#: reset_after_ms, retry_after_ms (:data:`NO_RETRY`: none) and reason.
RESULT_STRIDE_PER_LIMIT = 5
NO_RETRY = -1
#: A reason by its number on the wire (a dict lookup, cheaper than calling the enum).
REASONS = {reason.value: reason for reason in Reason}
#: The serializer type ids of Hazelcast's serialised form (``Data``) that a shard call
#: uses: an ``IdentifiedDataSerializable`` and a string.
IDENTIFIED_TYPE_ID = -2
STRING_TYPE_ID = -11
#: ``Data``: partition hash (0: hash the bytes) and serializer type id, then what the
#: serializer writes, all big-endian (the client's default byte order, which
#: :func:`limiter.cluster.connect` keeps): for a :class:`ShardProcessor`, "identified",
#: factory and class id, then its own fields up to the count of windows (time, grace, the
#: call's worker and number).
_SHARD_CALL_HEAD = struct.Struct(">iibiiqqqqi")
#: The same head for a :class:`ShardFanOutProcessor`, up to the count of shard entries.
_FAN_OUT_CALL_HEAD = _SHARD_CALL_HEAD
_STRING_HEAD = struct.Struct(">iii")
#: One limit of a window: slot, algorithm, limit, window, alignment, burst, shadow.
_LIMIT = struct.Struct(">qiqqiqi")


def _limit_fields(limit: Limit) -> tuple[int, int, int, int, int, int, int]:
    alignment = limit.alignment.wire_id if limit.alignment is not None else 0
    return (
        limit.slot,
        limit.algorithm.wire_id,
        limit.limit,
        limit.window_seconds,
        alignment,
        limit.burst,
        int(limit.shadow),
    )


def _write_limits(output: ObjectDataOutput, policy: Policy) -> None:
    """A policy's limits as every processor reads them: their count, then each limit's
    fields (the field-by-field form of the packed call's ``_LIMIT``)."""
    output.write_int(len(policy.limits))
    for limit in policy.limits:
        slot, algorithm, value, window, alignment, burst, shadow = _limit_fields(limit)
        output.write_long(slot)
        output.write_int(algorithm)
        output.write_long(value)
        output.write_long(window)
        output.write_int(alignment)
        output.write_long(burst)
        output.write_int(shadow)


def _write_windows(
    output: ObjectDataOutput, windows: Sequence[tuple[Quota, Sequence[int]]]
) -> None:
    """One shard entry's windows, as both processors send them: their count, then per
    window its key, its policy's limits and its queued costs."""
    output.write_int(len(windows))
    for quota, costs in windows:
        output.write_string(processor_key(quota.client_id))
        _write_limits(output, quota.policy)
        output.write_long_array(costs)


@functools.lru_cache(maxsize=4096)
def _policy_bytes(policy: Policy) -> bytes:
    """A policy's limits as a shard call carries them (the same for every call of a
    client until a PATCH changes it, so packed once)."""
    return struct.pack(">i", len(policy.limits)) + b"".join(
        _LIMIT.pack(*_limit_fields(limit)) for limit in policy.limits
    )


class ShardProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.ShardProcessor``: the batches of several
    clients of one shard, each the costs of every request queued for the client, decided
    in order against the client's whole policy by one execution, under the call's id
    (:mod:`limiter.call_ids`): the shard entry answers a call it already applied as it did
    then. The client only ever sends it, so it needs no factory on this side.

    The strategy sends the same bytes built faster by :func:`shard_call_data`; this class
    is the format as the client's serializer writes it, which they are checked against.
    """

    def __init__(
        self,
        now_ms: int,
        expiry_grace_ms: int,
        call: CallId,
        windows: Sequence[tuple[Quota, Sequence[int]]],
    ) -> None:
        self.now_ms = now_ms
        self.expiry_grace_ms = expiry_grace_ms
        self.call = call
        self.windows = windows

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_long(self.now_ms)
        output.write_long(self.expiry_grace_ms)
        output.write_long(self.call.worker)
        output.write_long(self.call.seq)
        _write_windows(output, self.windows)

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return SHARD_PROCESSOR_ID


#: One shard entry's part of a fan-out call: the entry's key and its clients' batches.
ShardBatches = tuple[str, Sequence[tuple[Quota, Sequence[int]]]]


class ShardFanOutProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.ShardFanOutProcessor``: a batch over several
    shard entries, sent with ``execute_on_keys`` on their keys, each entry's part laid out as
    a :class:`ShardProcessor` lays out its windows. As for that class, the strategy sends
    the bytes of :func:`fan_out_call_data`, checked against this form."""

    def __init__(
        self, now_ms: int, expiry_grace_ms: int, call: CallId, shards: Sequence[ShardBatches]
    ) -> None:
        self.now_ms = now_ms
        self.expiry_grace_ms = expiry_grace_ms
        self.call = call
        self.shards = shards

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_long(self.now_ms)
        output.write_long(self.expiry_grace_ms)
        output.write_long(self.call.worker)
        output.write_long(self.call.seq)
        output.write_int(len(self.shards))
        for shard_key, windows in self.shards:
            output.write_string(shard_key)
            _write_windows(output, windows)

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return SHARD_FAN_OUT_PROCESSOR_ID


class ShardWindowReader(IdentifiedDataSerializable):
    """``ratelimit.processor.ShardWindowReader``: one client's stored states, read on the
    owner of its shard, with the owner's clock at the read (:func:`parse_states_read`)."""

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


class ShardRefundProcessor(IdentifiedDataSerializable):
    """``ratelimit.processor.ShardRefundProcessor``: gives back one admission of one
    client (:func:`limiter.refund.refund`) on the owner of its shard, on the member's
    clock (or ``now_ms`` when not :data:`MEMBER_CLOCK`) with ``sent_ms = now -
    elapsed_ms``. Its own call, so a decision's call carries nothing more; answered
    ``[1]`` when it changed the stored states (also when sent again: the call's id is
    recognised), ``[0]`` when there was nothing to give back. Rare, so written by the
    client's serializer."""

    def __init__(
        self,
        now_ms: int,
        elapsed_ms: int,
        call: CallId,
        key: str,
        policy: Policy,
        cost: int,
        counted: Sequence[int],
    ) -> None:
        self.now_ms = now_ms
        self.elapsed_ms = elapsed_ms
        self.call = call
        self.key = key
        self.policy = policy
        self.cost = cost
        self.counted = counted

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_long(self.now_ms)
        output.write_long(self.elapsed_ms)
        output.write_long(self.call.worker)
        output.write_long(self.call.seq)
        output.write_string(self.key)
        _write_limits(output, self.policy)
        output.write_long(self.cost)
        output.write_int_array(list(self.counted))

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return SHARD_REFUND_PROCESSOR_ID


def shard_call_data(
    now_ms: int, expiry_grace_ms: int, call: CallId, windows: Sequence[tuple[Quota, Sequence[int]]]
) -> Data:
    """``ShardProcessor(now_ms, expiry_grace_ms, call, windows)`` serialised, byte for byte as
    the client's serializer writes it (tests/unit/test_shards.py compares the two).

    The hottest serialisation of the service: the client's writer makes a dozen Python
    calls per limit and allocates a buffer per call; this is the policy's bytes packed
    once per client and one ``struct`` pack per window.
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
            call.worker,
            call.seq,
            len(windows),
        )
    ]
    parts.extend(_windows_bytes(windows))
    return Data(b"".join(parts))  # type: ignore[no-untyped-call]  # untyped upstream


def _windows_bytes(windows: Sequence[tuple[Quota, Sequence[int]]]) -> list[bytes]:
    """Windows as :class:`ShardProcessor` carries them after their count."""
    parts = []
    for quota, costs in windows:
        key = processor_key(quota.client_id).encode()
        parts.append(struct.pack(f">i{len(key)}s", len(key), key))
        parts.append(_policy_bytes(quota.policy))
        parts.append(struct.pack(f">i{len(costs)}q", len(costs), *costs))
    return parts


def fan_out_call_data(
    now_ms: int, expiry_grace_ms: int, call: CallId, shards: Sequence[ShardBatches]
) -> Data:
    """``ShardFanOutProcessor(now_ms, expiry_grace_ms, call, shards)`` serialised, byte for byte
    as the client's serializer writes it (tests/unit/test_shards.py compares the two), the
    way :func:`shard_call_data` builds a one-shard call."""
    parts = [
        _FAN_OUT_CALL_HEAD.pack(
            0,
            IDENTIFIED_TYPE_ID,
            1,
            PROCESSOR_FACTORY_ID,
            SHARD_FAN_OUT_PROCESSOR_ID,
            now_ms,
            expiry_grace_ms,
            call.worker,
            call.seq,
            len(shards),
        )
    ]
    for shard_key, windows in shards:
        key = shard_key.encode()
        parts.append(struct.pack(f">i{len(key)}si", len(key), key, len(windows)))
        parts.extend(_windows_bytes(windows))
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


def parse_result(
    result: Sequence[int], policy: Policy, requests: int, start: int = 0
) -> list[PolicyDecision]:
    """One client's part of the member's ``long[]`` answer, from ``start``, as one policy
    decision per request (rebuilt from the per-limit decisions by
    :func:`limiter.policy_rule.combine`)."""
    values = policy.values
    end = start + RESULT_STRIDE_PER_LIMIT * len(values) * requests
    if len(result) < end:
        raise ValueError(f"processor answered {len(result)} values, short of {end}")
    answers = []
    make = tuple.__new__  # a Decision without its Python-level __new__: the hottest loop
    at = start
    try:
        for _ in range(requests):
            decisions = []
            every_limit_admits = True
            for value in values:
                retry = result[at + 3]
                admits = result[at] == 1
                every_limit_admits = every_limit_admits and admits
                decisions.append(
                    make(
                        Decision,
                        (
                            admits,
                            value,
                            result[at + 1],
                            result[at + 2],
                            REASONS[result[at + 4]],
                            None if retry == NO_RETRY else retry,
                        ),
                    )
                )
                at += RESULT_STRIDE_PER_LIMIT
            if every_limit_admits:  # most answers: nothing denied, nothing to weigh but one
                answers.append(admitted(policy, tuple(decisions)))
            else:
                answers.append(combine(policy, decisions))
    except KeyError as unknown:
        raise ValueError(f"processor answered an unknown reason {unknown}") from None
    return answers


def split_result(
    result: Sequence[int], batches: Sequence[tuple[Quota, Sequence[int]]]
) -> list[list[PolicyDecision]]:
    """A shard call's answer, one list of decisions per batch in order (one per client
    the call carried)."""
    answers = []
    at = 0
    for quota, costs in batches:
        answers.append(parse_result(result, quota.policy, len(costs), at))
        at += RESULT_STRIDE_PER_LIMIT * len(quota.policy.limits) * len(costs)
    if at != len(result):
        raise ValueError(f"processor answered {len(result)} values, expected {at}")
    return answers


def split_fan_out_result(
    entries: Sequence[tuple[str, Sequence[int]]], shards: Sequence[ShardBatches]
) -> list[list[PolicyDecision]]:
    """A fan-out call's answer (``execute_on_keys``: each shard entry's key with its
    ``long[]``, in no particular order), one list of decisions per batch, shard by shard in
    the call's order and batch by batch within each."""
    by_key = dict(entries)
    if len(by_key) != len(shards):
        raise ValueError(f"fan-out call answered {len(by_key)} shard entries of {len(shards)}")
    answers: list[list[PolicyDecision]] = []
    for shard_key, windows in shards:
        answers.extend(split_result(by_key[shard_key], windows))
    return answers


def parse_states_read(
    result: Sequence[int], policy: Policy
) -> tuple[tuple[LimitState | None, ...], int]:
    """A :class:`ShardWindowReader`'s answer, ``[now, expires_at, slot, a, b, c, ...]``
    (or ``[now]`` when the client has no live states): each limit's state (found by its
    slot; None when not stored) and the owner's clock at the read."""
    values = list(result)
    if not values or (len(values) > 1 and (len(values) - 2) % 4 != 0):
        raise ValueError(f"state reader answered {len(values)} values")
    now = int(values[0])
    stored = {
        int(values[i]): (int(values[i + 1]), int(values[i + 2]), int(values[i + 3]))
        for i in range(2, len(values), 4)
    }
    return tuple(
        state_of(limit, *stored[limit.slot]) if limit.slot in stored else None
        for limit in policy.limits
    ), now


def processor_key(client_id: str) -> str:
    """The entry processor's key of a client inside its shard: one per client, holding
    the states of every limit of its policy."""
    return f"{client_id}:p"
