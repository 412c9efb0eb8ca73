"""The key-value layout that the lock and cas strategies share.

Both keep the states of all of a client's limits as one short string under its own key
in the counters map, both write it only if the key still holds what they read (the entry
processor keeps its states inside the member and shares none of this), and both give a
key its TTL back after each replace (:meth:`KvWindowStrategy._restore_ttl` says why;
docs/design.md, "Storage and expiry", says it for users).

The value also names the writes that made it (:func:`encode_value`), so that a write
whose answer was lost (the key's owner died after applying it and its backup, before
answering) is recognised when the key is read again, instead of counted a second time
or failed open (:meth:`KvWindowStrategy._write_if_unchanged`, :func:`landed_write`).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, Unpack

from limiter import policy_rule
from limiter.call_ids import RESEND_PAUSE_SECONDS, CallIds, resend_after
from limiter.policy import Policy
from limiter.policy_rule import LimitState, PolicyDecision, state_numbers, state_of
from limiter.refund import refund
from limiter.settings import StrategyConfig
from limiter.strategy import Elapsed, Strategy, Wiring

__all__ = [
    "IDS_END",
    "KEPT_WRITERS",
    "KvWindowStrategy",
    "WriteIds",
    "Written",
    "decode_states",
    "encode_states",
    "encode_value",
    "landed_write",
    "policy_key",
    "write_ids",
]

#: Ends the write ids at the head of a stored value (no id or state holds it).
IDS_END = "#"
#: How many writers' ids a stored value keeps: the newest write of each of the last
#: writers, so that a write that landed and was then overwritten by other writers (at
#: most ``KEPT_WRITERS - 1`` of them) is still recognised.
KEPT_WRITERS = 3

_Result = TypeVar("_Result")


def policy_key(client_id: str) -> str:
    """The counter key of a client for the lock and cas strategies: one key per client,
    holding the states of every limit of its policy (:func:`encode_states`), so one
    conditional write changes them all at once.

    Not the entry processor's layout (a ``long[]`` inside a shard entry): a replica
    started with another strategy never reads a value it cannot compare.
    """
    return f"{client_id}:p"


def encode_states(policy: Policy, states: Sequence[LimitState | None]) -> str:
    """``"{slot}={a},{b},{c};{slot}=..."``, a limit per part in policy order (none for a
    limit with no state), its numbers :func:`limiter.policy_rule.state_numbers`. A string because
    the client serialises Python ints as 32-bit Java ints, which an epoch-millisecond
    start overflows, and ``replace_if_same`` needs the value to compare equal byte for
    byte. A limit's slot (:attr:`limiter.policy.Limit.slot`) ties its state to its name,
    algorithm and window length, so a PATCH keeps the usage of every limit that keeps
    those, and a stored part no limit claims is dropped at the next write."""
    return ";".join(
        f"{limit.slot}={','.join(map(str, state_numbers(state)))}"
        for limit, state in zip(policy.limits, states, strict=True)
        if state is not None
    )


class WriteIds:
    """One writer's write ids, as a stored value names them: its worker number (from a
    :class:`limiter.call_ids.CallIds`) and a counter, ``"{worker:x}.{seq:x}"``, the text
    of a :class:`limiter.call_ids.CallId`.

    Made as text at once: building a frozen ``CallId`` and formatting it costs about a
    microsecond and a half per write, five times the rest of the ids' work.
    """

    def __init__(self, call_ids: CallIds | None = None) -> None:
        self.worker = (call_ids or CallIds()).worker
        #: How every id of this writer begins.
        self.prefix = f"{self.worker:x}."
        self._seq = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._seq):x}"


def encode_value(
    write_id: str, read: object, policy: Policy, states: Sequence[LimitState | None]
) -> str:
    """The value a write stores: ``"{id},{id},{id}#{states}"``, the ids of the writes that
    made it, newest first, then :func:`encode_states`.

    ``write_id`` is this write's (``"{worker:x}.{seq:x}"``, :class:`WriteIds`);
    it comes first, followed by the ids of ``read`` (the value it replaces) written by
    other writers, so that the value keeps the latest write of each of the last
    :data:`KEPT_WRITERS` writers.

    Bytes added per key: each id is its writer's 63-bit number in hex (at most 16
    characters, 15 or 16 in practice), a dot and its counter in hex (6 characters for a
    worker's first 16 million writes, 8 up to 4 billion), so about 23 bytes; with the
    commas and the ``#``, about 24 bytes after a first write and 72 once three writers
    wrote the key, at most 3 x 33 + 3 = 102.
    """
    mine = write_id[: write_id.index(".") + 1]
    kept = [write_id]
    for other in write_ids(read):
        if not other.startswith(mine):
            kept.append(other)
            if len(kept) == KEPT_WRITERS:
                break
    return f"{','.join(kept)}{IDS_END}{encode_states(policy, states)}"


def write_ids(stored: object) -> list[str]:
    """The ids of the writes a stored value names, newest first (:func:`encode_value`);
    none in a value without ids (written before them) or that this layout did not write."""
    if not isinstance(stored, str):
        return []
    ids, found, _ = stored.partition(IDS_END)
    return ids.split(",") if found and ids else []


def landed_write(read: object, unknown: Mapping[str, object]) -> str | None:
    """The first id of ``unknown`` (writes whose answer was lost) that ``read`` names: that
    write was applied; None when it names none of them."""
    for write_id in write_ids(read):
        if write_id in unknown:
            return write_id
    return None


def decode_states(stored: object, policy: Policy) -> tuple[LimitState | None, ...]:
    """The state of each limit of ``policy`` in a stored value (None for a limit it does
    not hold, and for every limit when the key holds nothing this layout wrote). The
    writers' ids (:func:`encode_value`) are skipped, and a value without them (written
    before them) reads the same."""
    if not isinstance(stored, str):
        return (None,) * len(policy.limits)
    stored = stored.rpartition(IDS_END)[2]
    if not stored:
        return (None,) * len(policy.limits)
    by_slot: dict[int, tuple[int, int, int]] = {}
    try:
        for part in stored.split(";"):
            slot, _, numbers = part.partition("=")
            a, b, c = numbers.split(",")
            by_slot[int(slot)] = (int(a), int(b), int(c))
        return tuple(
            state_of(limit, *by_slot[limit.slot]) if limit.slot in by_slot else None
            for limit in policy.limits
        )
    except ValueError:
        return (None,) * len(policy.limits)


class Written(enum.Enum):
    """What a conditional write came to."""

    #: Stored.
    YES = "yes"
    #: Not stored: the key no longer held what was read.
    NO = "no"
    #: Its answer was lost (:func:`limiter.call_ids.resend_after`): it may have been
    #: stored; the key, read again, names the write if it was (:func:`landed_write`).
    UNKNOWN = "unknown"


class KvWindowStrategy(Strategy):
    """A strategy whose clients are :func:`policy_key` entries holding
    :func:`encode_value`, written only if unchanged since read."""

    def __init__(self, counters: Any, config: StrategyConfig, **wiring: Unpack[Wiring]) -> None:
        super().__init__(counters, config, **wiring)
        self._ttl_restores: set[asyncio.Task[None]] = set()
        #: The ids of this worker's writes of decisions, and of its refunds: two writers
        #: in a value's ids, since a refund runs beside the quota's lane and would
        #: otherwise drop the id of a decision's write still to be recognised.
        self.decision_ids = WriteIds()
        self.refund_ids = WriteIds()

    async def stored_states(
        self, client_id: str, policy: Policy
    ) -> tuple[tuple[LimitState | None, ...], int]:
        return decode_states(await self.counters.get(policy_key(client_id)), policy), self.now_ms()

    async def close(self) -> None:
        """Waits for the decisions still running, then for the TTL restores they left."""
        await super().close()
        if self._ttl_restores:
            await asyncio.gather(*self._ttl_restores, return_exceptions=True)

    def ttl_ms(self, decision: PolicyDecision) -> int:
        """A counter lives until the last of its limits would be back to empty (each
        limit's reset after the decision: a window's end, a sliding window's next end, a
        GCRA bucket full again), plus the grace."""
        return max(d.reset_after_ms for d in decision.decisions) + self.expiry_grace_ms

    def refunded_value(
        self,
        read: Any,
        policy: Policy,
        cost: int,
        counted: Sequence[int],
        elapsed: Elapsed,
        write_id: str,
    ) -> tuple[str | None, int]:
        """What to write in place of ``read`` once a request is given back
        (:func:`limiter.refund.refund` at :meth:`now_ms`, ``sent_ms`` that less
        ``elapsed()``) by the write ``write_id``, with its TTL; None when the rule changes
        nothing (nothing stored, or no counted window still holds it).

        The TTL is what a decision sets, from the states left: when every limit is back
        to empty, plus the grace. A refund only lowers states, so it is never later than
        the one stored, and the key never outlives what it must remember.
        """
        now = self.now_ms()
        states = decode_states(read, policy)
        new_states = refund(states, now, policy, cost, counted, now - elapsed())
        if new_states == states:
            return None, 0
        return encode_value(write_id, read, policy, new_states), self.ttl_ms(
            policy_rule.peek(new_states, now, policy)
        )

    async def _write_if_unchanged(
        self, key: str, read: Any, value: str, ttl_ms: int
    ) -> tuple[Written, Any]:
        """Stores ``value`` only if ``key`` still holds ``read`` (absent when None; any
        value, even one this layout cannot decode, is compared as it was read).

        Returns what the write came to and, when an absent key turned out to be there,
        the value found (saving the next attempt a ``get``).

        The client does not send these writes again after a lost connection
        (docs/failover.md): an error after which the cluster may still answer
        (:func:`limiter.call_ids.resend_after`) is :attr:`Written.UNKNOWN`, for the caller
        to read the key again and look for the write's id (:meth:`_landed`); any other
        error propagates (the failure mode decides). Read again, a key that does not name
        the write means it was not applied, and it can never be applied later over a
        changed value: it was conditional on ``read``, and every value names the write
        that made it, so a changed value never equals ``read`` again (nor does a key
        written since it was read absent turn absent again before its TTL). Over an
        unchanged value it could still land (were it held up on a member that still
        runs), but then only one of it and the caller's next write, conditional on the
        same value, can land, and the caller keeps looking for both ids at each read.
        """
        try:
            if read is None:
                found = await self.counters.put_if_absent(key, value, ttl=ttl_ms / 1000)
                return (Written.YES if found is None else Written.NO), found
            if await self.counters.replace_if_same(key, read, value):
                self._restore_ttl(key, ttl_ms)
                return Written.YES, None
            return Written.NO, None
        except Exception as error:
            if not resend_after(error):
                raise
            return Written.UNKNOWN, None

    def _landed(
        self, key: str, read: Any, unknown: Mapping[str, tuple[_Result, int]]
    ) -> _Result | None:
        """The result kept for the write of ``unknown`` (its id → its result and TTL) that
        ``read`` names: that write was applied. None when ``read`` names none of them.

        ``unknown`` holds the writes a batch sent and was not told were written: those
        whose answer was lost, and those answered "not written", which may also have
        been applied: the client sends a write again by itself after a member's
        retryable error (docs/failover.md, row 5), and the copy sent again finds the
        first one's value and answers so.

        When the key still holds that write's value (its id first), the key gets its TTL
        back, as after any replace (needless after a ``put_if_absent``, and harmless: the
        TTL only ends a little later).
        """
        landed = landed_write(read, unknown)
        if landed is None:
            return None
        result, ttl_ms = unknown[landed]
        if write_ids(read)[0] == landed:
            self._restore_ttl(key, ttl_ms)
        return result

    async def _pause_to_read_again(self, deadline: float) -> bool:
        """Waits :data:`limiter.call_ids.RESEND_PAUSE_SECONDS` before a write's key is read
        again after its answer was lost (time for the client to hear of a dead member
        and of its partitions' new owners), if ``deadline`` leaves time for it. Returns
        whether it did: if not, the caller reads once more, to recognise the write, and
        decides nothing more."""
        if asyncio.get_running_loop().time() + RESEND_PAUSE_SECONDS >= deadline:
            return False
        await asyncio.sleep(RESEND_PAUSE_SECONDS)
        return True

    def _restore_ttl(self, key: str, ttl_ms: int) -> None:
        """Gives ``key`` its window's TTL again, off the decision's critical path.

        ``replace_if_same`` keeps no per-entry TTL (the entry falls back to the map's
        ``time-to-live-seconds``), and Hazelcast has no replace-with-TTL; the map-level
        TTL in hazelcast.xml bounds a key whose restore was lost.
        """
        task = asyncio.get_running_loop().create_task(self._set_ttl(key, ttl_ms))
        self._ttl_restores.add(task)
        task.add_done_callback(self._ttl_restores.discard)

    async def _set_ttl(self, key: str, ttl_ms: int) -> None:
        try:
            await self.counters.set_ttl(key, ttl_ms / 1000)
        except Exception:
            # The map-level TTL still bounds the key's life; count it, do not fail.
            self.observer.ttl_restore_failed()
