"""The client registry as one worker uses it: the store on the cluster
(:mod:`registry.store`), the worker's memo in front of it (:mod:`registry.memo`), and the
change events and change log that keep the memo current (:mod:`registry.changes`).

The guarded route asks :meth:`Registry.remembered` (no await) and, when the memo does not
know the id, :meth:`Registry.fetch`; the management routes read and write through the
other methods, which keep this worker's memo and the change log in step with their
writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limiter import Policy
from registry.changes import ChangeLog, changed_record
from registry.config import RegistryConfig
from registry.errors import UpdateConflict
from registry.memo import Memo
from registry.observer import NullObserver, Observer
from registry.records import ClientRecord
from registry.store import Store

__all__ = ["UPDATE_ATTEMPTS", "PolicyChange", "Registry"]

#: An update re-reads and retries when another update of the same client won the race.
UPDATE_ATTEMPTS = 16

#: What an update does to a client: its new policy, worked out from the record as it is
#: at each attempt (so a change that depends on the current policy, such as a new value
#: for the one limit of a single-form client, is checked against what it replaces).
PolicyChange = Callable[[ClientRecord], Policy]


class Registry:
    """Create, read, update and delete clients; ``clients`` and ``names`` are map proxies,
    ``changes`` the change log's ringbuffer.

    A read is kept in the memo only if it began while the memo was trusted and served
    and nothing changed during it, and it is then read past the near cache, whose own
    invalidation may have been lost with the event (see :mod:`registry.memo`).
    """

    def __init__(
        self,
        clients: Any,
        names: Any,
        changes: Any,
        config: RegistryConfig,
        *,
        listening_everywhere: Callable[[str], bool] = lambda registration: True,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = Store(clients, names)
        self.memo = Memo(
            ttl_seconds=config.memo_seconds,
            size=config.memo_size,
            log_poll_seconds=config.log_poll_seconds,
            listening_everywhere=listening_everywhere,
            clock=clock,
        )
        self._observer: Observer = NullObserver() if observer is None else observer
        self.log = ChangeLog(
            changes,
            self.memo,
            poll_seconds=config.log_poll_seconds,
            observer=self._observer,
            clock=clock,
            sleep=sleep,
        )
        self._clock = clock
        self._sleep = sleep
        #: ``(True, record or None)`` when the memo knows the id, without any await (the
        #: memo's own method, bound here so the guarded route pays no extra call).
        self.remembered: Callable[[str], tuple[bool, ClientRecord | None]] = self.memo.remembered
        #: Empties the memo; the cluster link calls it whenever events may be lost.
        self.distrust: Callable[[], None] = self.memo.distrust

    async def follow_changes(self) -> None:
        """Registers the entry listener that keeps the memo current (once connected)."""
        self.memo.registration = await self.store.clients.add_entry_listener(
            include_value=True,
            updated_func=self._on_change,
            removed_func=self._on_change,
            evicted_func=self._on_change,
            expired_func=self._on_change,
        )

    def _on_change(self, event: Any) -> None:
        self.memo.changed(*changed_record(event))

    async def until_trusted(self, deadline_seconds: float) -> bool:
        """Polls until every member would tell of a change (the memo may keep reads), so
        that a new worker's first reads are kept; False at the deadline."""
        deadline = self._clock() + deadline_seconds
        while not self.memo.trusted():
            if self._clock() >= deadline:
                return False
            await self._sleep(0.01)
        return True

    async def fetch(self, client_id: str) -> ClientRecord | None:
        """The record, kept in the memo: the guarded route's read when :meth:`remembered`
        does not know the id. It is kept only if every member would have told of a change
        from before the read began (listeners only get added between two
        :meth:`distrust` calls), the memo is being served, and no event or log entry
        arrived meanwhile; such a read goes past the near cache. Any other read goes
        through it."""
        self._observer.record_read()
        memo = self.memo
        events = memo.events
        keep = memo.keeps_reads()
        text = await (self.store.read_text(client_id) if keep else self.store.read_near(client_id))
        record = None if text is None else ClientRecord.from_json(text)
        if keep and record is not None and events == memo.events:
            memo.remember(client_id, record)
        return record

    async def follow_log(self) -> None:
        """Reads the change log every poll until cancelled (a task of the worker's)."""
        await self.log.follow()

    async def read_log(self) -> None:
        """One poll of the change log (see :meth:`registry.changes.ChangeLog.read`)."""
        await self.log.read()

    async def read(self, client_id: str) -> ClientRecord | None:
        """The record as the cluster has it now, bypassing the near cache."""
        return await self.store.read(client_id)

    async def find(self, name: str) -> ClientRecord | None:
        """The client that holds ``name`` now, or None (see :meth:`Store.find`)."""
        return await self.store.find(name)

    async def create(self, name: str, policy: Policy) -> ClientRecord:
        """A new client with a random UUID4; :class:`NameTaken` when the name is in use."""
        return await self.store.create(name, policy)

    async def update(self, client_id: str, change: PolicyChange) -> ClientRecord | None:
        """Gives the client the policy ``change`` makes of its record, atomically; None
        when the client does not exist, :class:`UpdateConflict` when it changed under
        every attempt. Whatever ``change`` raises passes on, and nothing is written."""
        for _ in range(UPDATE_ATTEMPTS):
            text = await self.store.read_text(client_id)
            if text is None:
                return None
            current = ClientRecord.from_json(text)
            changed = dataclasses.replace(current, policy=change(current))
            if changed == current:
                # Logged again: this may retry an update whose log entry was lost.
                await self.log.append(client_id)
                return current
            if await self.store.replace(client_id, text, changed):
                self.memo.events += 1
                self.memo.remember(client_id, changed)
                await self.log.append(client_id)
                return changed
        raise UpdateConflict(UPDATE_ATTEMPTS)

    async def delete(self, client_id: str) -> ClientRecord | None:
        """Removes the client and frees its name; None when it did not exist."""
        record = await self.store.remove(client_id)
        if record is None:
            # Logged all the same: this may retry a delete whose log entry was lost.
            await self.log.append(client_id)
            return None
        self.memo.events += 1
        self.memo.remember(client_id, None)
        await self.store.release_name(record)
        await self.log.append(client_id)
        return record
