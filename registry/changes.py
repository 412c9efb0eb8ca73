"""How a worker learns of changes to records other workers made, to keep its memo
(:mod:`registry.memo`) current: change events, and the change log behind them.

- **Change events** (an entry listener on the clients map): a change replaces the
  record, a removal leaves a tombstone, as soon as the member's event arrives. Events
  are lost around a change of the connections, and a member drops them when its event
  queue is full.
- **The change log** (``{RATELIMIT_CLIENTS_MAP}.changes``, a ringbuffer in memory only,
  configured in hazelcast.xml): every update and delete appends the client's id after its
  write, and each worker reads the log every ``log_poll_seconds`` and drops the ids it
  finds. This catches what an event missed without a connection changing. A gap in the
  log (entries overwritten before they were read, a log that restarted) empties the memo
  like a lost connection.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from registry.memo import Memo
from registry.observer import LogFailure, Observer
from registry.records import ClientRecord

__all__ = [
    "LOG_BATCH",
    "LOG_WARNING_EVERY_SECONDS",
    "ChangeLog",
    "changed_record",
    "changes_log_name",
]

#: Log entries read per call (the client takes fewer than 1,000, and at most the
#: ringbuffer's capacity, 10,000 in hazelcast.xml).
LOG_BATCH = 500
#: At most one warning per this many seconds about a log that could not be read.
LOG_WARNING_EVERY_SECONDS = 60.0


def changes_log_name(clients_map: str) -> str:
    """The registry's change log (a ringbuffer, configured in hazelcast.xml)."""
    return f"{clients_map}.changes"


def changed_record(event: Any) -> tuple[str, ClientRecord | None]:
    """A change event's client id, and its record now (None: removed, evicted, expired)."""
    value = getattr(event, "value", None)
    return str(event.key), ClientRecord.from_json(value) if isinstance(value, str) else None


class ChangeLog:
    """One worker's end of the change log ``ringbuffer``: it appends the ids this worker
    changed, and reads the ids every worker changed into ``memo``."""

    def __init__(
        self,
        ringbuffer: Any,
        memo: Memo,
        *,
        poll_seconds: float,
        observer: Observer,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.ringbuffer = ringbuffer
        self.memo = memo
        self.poll_seconds = poll_seconds
        self._observer = observer
        self._clock = clock
        self._sleep = sleep
        self._last_warning = -math.inf

    async def append(self, client_id: str) -> None:
        """Appends ``client_id`` to the log, after its write."""
        await self.ringbuffer.add(client_id)

    async def follow(self) -> None:
        """Reads the log every ``poll_seconds`` until cancelled (a task of the worker's);
        a failed read is reported and tried again at the next poll, and the memo stops
        being served :data:`registry.memo.LOG_TRUST_POLLS` polls after the last full read."""
        while True:
            try:
                await self.read()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._observer.log_failed(LogFailure.ERROR)
                now = self._clock()
                if now - self._last_warning >= LOG_WARNING_EVERY_SECONDS:
                    self._last_warning = now
                    self._observer.warning(f"registry change log not read: {error}")
            await self._sleep(self.poll_seconds)

    async def read(self) -> None:
        """One poll of the log: joins it at its end, or drops every id logged since the
        last poll; either way the memo is served for a while from this poll's start."""
        memo = self.memo
        started = self._clock()
        position = memo.log_position
        if position is None:
            tail = await self.ringbuffer.tail_sequence()
            if memo.log_position is None:
                memo.log_position = tail + 1
                # Reads that began before the log was joined are not kept.
                memo.events += 1
                memo.serve_from(started)
            return
        while True:
            batch = await self.ringbuffer.read_many(position, 0, LOG_BATCH)
            if memo.log_position != position:
                return  # distrusted meanwhile: the next poll joins again
            if batch.next_sequence_to_read_from != position + batch.read_count:
                # Entries were overwritten before this worker read them, or the log
                # started over: which records changed is unknown.
                self._observer.log_failed(LogFailure.GAP)
                self._observer.warning("registry change log skipped entries; memo emptied")
                memo.distrust()
                return
            if batch.read_count:
                memo.events += 1
                for client_id in batch:
                    memo.forget(str(client_id))
            position = memo.log_position = batch.next_sequence_to_read_from
            if batch.read_count < LOG_BATCH:
                memo.serve_from(started)
                return
