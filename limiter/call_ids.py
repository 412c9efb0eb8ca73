"""Ids that make a cluster call safe to send again, and the errors after which it must be.

A call that changes a window can fail at the client after the member applied it: the
owner ran it and its synchronous backup holds the result, but the owner died before its
answer left (the client sees ``TargetDisconnectedError``), or a member relayed it and
retried it on the new owner (``MemberLeftError``). Deciding again would count the same
requests twice; giving up would fail a request open while the rest of the cluster answers.
So every such call carries an id of its own, and the stored state remembers the ids of the
calls that made it (the entry processor's shard entry keeps each worker's last call with
its answer; the lock and cas strategies' value carries its writers' ids). A call sent
again is recognised by its id: the member answers what it answered the first time and
changes nothing.

An id is this worker's random 64-bit number and a counter: unique without any
coordination, and cheap (two longs on the wire, no clock, no round trip). Workers that
draw the same number by chance (two among a thousand workers: about 3e-14) would only
ever confuse their own retries, and only of calls with the same counter.

:func:`resend_after` says which errors leave a call's fate unknown while the cluster may
still answer (send it again, with the same id), and which mean the cluster cannot be
reached (do not: the failure mode decides).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hazelcast.errors import (
    HazelcastError,
    HazelcastInstanceNotActiveError,
    HazelcastIOError,
    OperationTimeoutError,
    TargetDisconnectedError,
    is_retryable_error,
)

__all__ = ["RESEND_PAUSE_SECONDS", "CallId", "CallIds", "resend_after", "send_until"]

T = TypeVar("T")

#: The pause before a call whose fate is unknown is sent again: long enough for the
#: client to hear of a dead member's connection or a new partition owner, short against
#: the decision timeout (1 s by default).
RESEND_PAUSE_SECONDS = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class CallId:
    """One call: the worker that sent it and its number there (both fit a Java long)."""

    worker: int
    seq: int

    def __str__(self) -> str:
        return f"{self.worker:x}.{self.seq:x}"


class CallIds:
    """The ids of one worker's calls: a random worker number, and a counter."""

    def __init__(self, worker: int | None = None) -> None:
        #: Positive and below 2**63, so a Java long holds it as it is.
        self.worker = worker if worker is not None else secrets.randbits(63) or 1
        self._seq = itertools.count(1)

    def next(self) -> CallId:
        return CallId(self.worker, next(self._seq))

    @staticmethod
    def apart() -> CallId:
        """An id under a worker number of its own, for a call that may be in flight beside
        this worker's others on the same entry (a refund runs outside the lanes): a shard
        entry keeps one call per worker number, so sharing this worker's number would let
        one call's record replace another's still to be recognised."""
        return CallId(secrets.randbits(63) or 1, 1)


def resend_after(error: BaseException) -> bool:
    """Whether a call that failed with ``error`` may have reached a member that is going
    away while others still answer, so that it should be sent again (with its id).

    Yes for a lost connection to the member the call was written to, a member leaving or
    shutting down, a partition changing owner, and the client's own retries running out of
    time. No when the client has no connection at all (``ClientOfflineError``) or is shut
    down, and for everything a member refused (a malformed call, a bug): sending those
    again changes nothing.
    """
    if not isinstance(error, HazelcastError):
        return isinstance(error, OSError)
    return isinstance(
        error,
        (
            TargetDisconnectedError,
            HazelcastInstanceNotActiveError,
            HazelcastIOError,
            OperationTimeoutError,
        ),
    ) or is_retryable_error(error)  # type: ignore[no-untyped-call]  # untyped upstream


async def send_until(deadline: float, send: Callable[[], Awaitable[T]]) -> T:
    """``send()``'s answer, sending it again after each failure that leaves its fate unknown
    (:func:`resend_after`) until ``deadline`` (event-loop time) is too near for another
    try; then, or on any other error, the error is raised.

    ``send`` must send the same call each time (the same id): only then is a call that was
    applied before its answer was lost recognised instead of counted again.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await send()
        except Exception as error:
            if not resend_after(error) or loop.time() + RESEND_PAUSE_SECONDS >= deadline:
                raise
        await asyncio.sleep(RESEND_PAUSE_SECONDS)
