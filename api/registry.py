"""The client registry on Hazelcast: who may call, with which limit and window.

Two maps (both with a synchronous backup and the registry quorum in hazelcast.xml):

- ``RATELIMIT_CLIENTS_MAP``: id → record, a JSON string
  ``{"id", "name", "limit", "window_seconds", "created_at", "window_alignment"}`` (a record
  written before alignments existed has none and is read as ``clock``, what it counted
  in). Replicas read it through a near cache (:func:`near_cache_config`), so the guarded
  route costs one local lookup plus the decision's round trip; a change is pushed to
  every replica's near cache by the cluster (batched, about a second) and the near
  cache's TTL bounds a lost push.
- ``RATELIMIT_NAMES_MAP``: name → id. ``put_if_absent`` on it decides atomically which of
  two concurrent creates of one name wins.

Beside them, ``{RATELIMIT_CLIENTS_MAP}.changes``, a ringbuffer of the ids of updated and
deleted clients, which keeps each worker's memo of records current when a change event
is lost (see :class:`Registry`). It lives in memory only.

Both survive a restart of the whole cluster: the members write every record through to
PostgreSQL before changing their memory (``ratelimit.store`` in the member jar), and
load both maps from it when the cluster starts; a name is durable inside its record (the
database holds each name once). A write the database refuses fails whole and changes
nothing: :class:`RegistryUnavailable` (503), or :class:`NameTaken` when the database
already holds the name. Reads and the guarded route use memory only, so they go on
while the database is away.

Order of writes, so that a crash between two of them never breaks a name for good:
create writes the record first and claims the name second (a lost claim deletes the
record); delete removes the record first and the name second. Only the record's write
reaches the database, so a database that is away stops a create or a delete at its
first step, before anything changed. A name left pointing at a
missing record is therefore stale, and the next create of that name takes it over with
``replace_if_same``, which is atomic too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from hazelcast.config import InMemoryFormat
from hazelcast.errors import UndefinedErrorCodeError
from sanic.log import error_logger

from api.errors import NameTaken, RegistryUnavailable, UpdateConflict
from api.metrics import REGISTRY_LOG_FAILURES, TALLY, labelled
from api.settings import Settings
from limiter import Alignment

__all__ = [
    "ClientRecord",
    "Registry",
    "changes_log_name",
    "near_cache_config",
    "parse_client_id",
]

#: A PATCH re-reads and retries when another PATCH of the same client won the race.
UPDATE_ATTEMPTS = 16
#: What the members' map store throws (hazelcast/src/main/java/ratelimit/store), as the
#: client reports a server exception it has no class of its own for.
STORE_UNAVAILABLE = "ratelimit.store.RegistryUnavailableException"
STORE_NAME_TAKEN = "ratelimit.store.NameTakenException"
#: The memo is served for this many log polls after the change log was last read to its
#: end: a poll that fails or hangs stops it soon, never a change left unseen for long.
LOG_TRUST_POLLS = 5
#: Log entries read per call (the client takes fewer than 1,000, and at most the
#: ringbuffer's capacity, 10,000 in hazelcast.xml).
LOG_BATCH = 500
#: At most one warning per this many seconds about a log that could not be read.
LOG_WARNING_EVERY_SECONDS = 60.0
#: Retry-After of a write refused for want of the database.
STORE_RETRY_AFTER_SECONDS = 2
#: A client id as the service writes it (``str(uuid.UUID(...))``): lower case, hyphenated.
CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@contextlib.asynccontextmanager
async def _written_through() -> AsyncIterator[None]:
    """One write of a record, which the members store in PostgreSQL before memory: the
    store's refusal becomes the API's error (nothing was written, in memory or on disk);
    any other cluster error passes on to the caller's ``cluster_call``."""
    try:
        yield
    except UndefinedErrorCodeError as error:
        server_class = error.args[1] if len(error.args) > 1 else ""
        if server_class == STORE_NAME_TAKEN:
            raise NameTaken("a client with this name already exists") from None
        if server_class == STORE_UNAVAILABLE:
            raise RegistryUnavailable(STORE_RETRY_AFTER_SECONDS) from None
        raise


@dataclasses.dataclass(frozen=True)
class ClientRecord:
    """A client as the registry stores it and the management routes show it (the one
    shape of a record: the OpenAPI document describes this class too)."""

    id: str
    name: str
    limit: int
    window_seconds: int
    created_at: str
    window_alignment: Alignment

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ClientRecord:
        return _parsed_record(text)

    def as_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["window_alignment"] = self.window_alignment.value
        return fields


@functools.lru_cache(maxsize=4096)
def _parsed_record(text: str) -> ClientRecord:
    """Records are immutable and the same text arrives on every request of a client: parse
    each text once (the guarded route's hottest line after the network)."""
    fields = json.loads(text)
    fields["window_alignment"] = Alignment(fields.get("window_alignment", Alignment.CLOCK))
    return ClientRecord(**fields)


@functools.lru_cache(maxsize=4096)
def parse_client_id(raw: str) -> str | None:
    """The canonical form of a client id, or None when ``raw`` is no UUID at all.

    Any spelling ``uuid.UUID`` accepts (upper case, braces, no hyphens) names the same
    client, so one client never gets two counters.
    """
    if len(raw) > 64:
        return None
    if CANONICAL_ID.fullmatch(raw):
        # What the parse below would give back (every request names its client).
        return raw
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def near_cache_config(settings: Settings) -> dict[str, dict[str, Any]]:
    """Client option ``near_caches`` for the registry map."""
    return {
        settings.clients_map: {
            "invalidate_on_change": True,
            "time_to_live": settings.registry_near_cache_ttl_seconds,
            "in_memory_format": InMemoryFormat.OBJECT,
        }
    }


def changes_log_name(settings: Settings) -> str:
    """The registry's change log (a ringbuffer, configured in hazelcast.xml)."""
    return f"{settings.clients_map}.changes"


def _now_iso() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Registry:
    """Create, read, update and delete clients; ``clients`` and ``names`` are map proxies.

    The guarded route reads a record on every request, so a worker keeps the records it
    has read in a plain dict in front of the near cache (a near-cache hit still costs a
    key serialisation and a proxy call). Two sources keep that memo current:

    - **Change events** (an entry listener): a change replaces the record, a removal
      leaves a tombstone, as soon as the member's event arrives. Events are lost around a
      change of the connections (the cluster lost, a member joining or leaving, a
      connection opening or closing); each of these calls :meth:`distrust`, which empties
      the memo, and the memo keeps nothing until ``listening_everywhere(registration)``
      says the listener is registered on a connection to every member again.
    - **The change log** (``changes``, a ringbuffer): every update and delete appends the
      client's id after its write, and :meth:`follow_log` reads the log every
      ``log_poll_seconds`` and drops the ids it finds. This catches what an event missed
      without a connection changing (a member drops events when its event queue is
      full). The memo is served only while the log has been read to its end within the
      last :data:`LOG_TRUST_POLLS` polls; a gap in the log (entries overwritten before
      they were read, a log that restarted) empties the memo like a lost connection.

    A read is kept only if it began while both held (listener everywhere, log position
    known) and nothing changed during it, and it is read past the near cache, whose own
    invalidation may have been lost with the event. ``memo_ttl_seconds`` bounds what both
    sources can miss at once: a writer that stopped between its write and its log entry
    while a member dropped that write's event.
    """

    def __init__(
        self,
        clients: Any,
        names: Any,
        *,
        changes: Any,
        log_poll_seconds: float = 1.0,
        memo_ttl_seconds: float = 3600.0,
        memo_size: int = 100_000,
        listening_everywhere: Callable[[str], bool] = lambda registration: True,
    ) -> None:
        self.clients = clients
        self.names = names
        #: The change log, a ringbuffer of client ids.
        self.changes = changes
        self.log_poll_seconds = log_poll_seconds
        #: How long the memo is served after the log was last read to its end.
        self._log_trust_seconds = LOG_TRUST_POLLS * log_poll_seconds
        self.memo_ttl_seconds = memo_ttl_seconds
        self.memo_size = memo_size
        self._listening_everywhere = listening_everywhere
        self._memo: dict[str, tuple[ClientRecord | None, float]] = {}
        self._events = 0
        #: The entry listener's registration, once it is registered.
        self._registration: str | None = None
        #: The next log entry to read; None until the log is joined (and after distrust).
        self._log_position: int | None = None
        #: The memo is served until then (monotonic): a while after the log's last full read.
        self._served_until = 0.0
        self._last_log_warning = -math.inf

    async def follow_changes(self) -> None:
        """Registers the entry listener that keeps the memo current (once connected)."""
        self._registration = await self.clients.add_entry_listener(
            include_value=True,
            updated_func=self._on_change,
            removed_func=self._on_change,
            evicted_func=self._on_change,
            expired_func=self._on_change,
        )

    def _trusted(self) -> bool:
        """Whether every member would tell this worker of a change now, and the log
        position is known (a read begun now is kept)."""
        return (
            self._registration is not None
            and self._log_position is not None
            and self._listening_everywhere(self._registration)
        )

    async def until_trusted(self, deadline_seconds: float) -> bool:
        """Polls until every member would tell of a change (the memo may keep reads), so
        that a new worker's first reads are kept; False at the deadline."""
        deadline = time.monotonic() + deadline_seconds
        while not self._trusted():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _on_change(self, event: Any) -> None:
        self._events += 1
        key = str(event.key)
        if not self._trusted():
            # A later event for this key might be lost yet: read it again instead.
            self._memo.pop(key, None)
            return
        value = getattr(event, "value", None)
        record = ClientRecord.from_json(value) if isinstance(value, str) else None
        if record is None and key not in self._memo:
            return
        self._remember(key, record)

    def _remember(self, client_id: str, record: ClientRecord | None) -> None:
        self._memo.pop(client_id, None)
        self._memo[client_id] = (record, time.monotonic() + self.memo_ttl_seconds)
        if len(self._memo) > self.memo_size:
            del self._memo[next(iter(self._memo))]

    def distrust(self) -> None:
        """Empties the memo: change events may have been missed, or may be until the
        listener is registered on every member again (see :meth:`_trusted`), and the log
        is joined again from its end."""
        self._memo.clear()
        self._events += 1
        self._log_position = None
        self._served_until = 0.0

    def remembered(self, client_id: str) -> tuple[bool, ClientRecord | None]:
        """``(True, record or None)`` when the memo knows the id, without any await."""
        entry = self._memo.get(client_id)
        if entry is None:
            return False, None
        now = time.monotonic()
        if entry[1] < now or self._served_until < now:
            return False, None
        return True, entry[0]

    async def fetch(self, client_id: str) -> ClientRecord | None:
        """The record, kept in the memo: the guarded route's read when :meth:`remembered`
        does not know the id. It is kept only if every member would have told of a change
        from before the read began (listeners only get added between two
        :meth:`distrust` calls), the memo is being served, and no event or log entry
        arrived meanwhile; such a read goes past the near cache. Any other read goes
        through it."""
        events = self._events
        keep = self._trusted() and time.monotonic() <= self._served_until
        text = await (self._read_text(client_id) if keep else self.clients.get(client_id))
        record = None if text is None else ClientRecord.from_json(text)
        if keep and record is not None and events == self._events:
            self._remember(client_id, record)
        return record

    async def follow_log(self) -> None:
        """Reads the change log every ``log_poll_seconds`` until cancelled (a task of the
        worker's); a failed read is logged and tried again at the next poll, and the memo
        stops being served :data:`LOG_TRUST_POLLS` polls after the last full read."""
        while True:
            try:
                await self.read_log()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                TALLY.inc(labelled(REGISTRY_LOG_FAILURES, "error"))
                now = time.monotonic()
                if now - self._last_log_warning >= LOG_WARNING_EVERY_SECONDS:
                    self._last_log_warning = now
                    error_logger.warning("registry change log not read: %s", error)
            await asyncio.sleep(self.log_poll_seconds)

    async def read_log(self) -> None:
        """One poll of the change log: joins it at its end, or drops every id logged since
        the last poll; either way the memo is served for a while from this poll's start."""
        started = time.monotonic()
        position = self._log_position
        if position is None:
            tail = await self.changes.tail_sequence()
            if self._log_position is None:
                self._log_position = tail + 1
                # Reads that began before the log was joined are not kept.
                self._events += 1
                self._served_until = started + self._log_trust_seconds
            return
        while True:
            batch = await self.changes.read_many(position, 0, LOG_BATCH)
            if self._log_position != position:
                return  # distrusted meanwhile: the next poll joins again
            if batch.next_sequence_to_read_from != position + batch.read_count:
                # Entries were overwritten before this worker read them, or the log
                # started over: which records changed is unknown.
                TALLY.inc(labelled(REGISTRY_LOG_FAILURES, "gap"))
                error_logger.warning("registry change log skipped entries; memo emptied")
                self.distrust()
                return
            if batch.read_count:
                self._events += 1
                for client_id in batch:
                    self._memo.pop(str(client_id), None)
            position = self._log_position = batch.next_sequence_to_read_from
            if batch.read_count < LOG_BATCH:
                self._served_until = started + self._log_trust_seconds
                return

    async def _log_change(self, client_id: str) -> None:
        """Appends ``client_id`` to the change log, after its write."""
        await self.changes.add(client_id)

    async def read(self, client_id: str) -> ClientRecord | None:
        """The record as the cluster has it now, bypassing the near cache."""
        text = await self._read_text(client_id)
        return None if text is None else ClientRecord.from_json(text)

    async def find(self, name: str) -> ClientRecord | None:
        """The client that holds ``name`` now (bypassing the near cache), or None.

        The way back for an admin whose create answer was lost: the name is taken, and
        this tells by whom. A name left behind by a delete that stopped halfway has no
        record, and counts as free.
        """
        client_id = await self.names.get(name)
        return None if client_id is None else await self.read(str(client_id))

    async def _read_text(self, client_id: str) -> str | None:
        view = await self.clients.get_entry_view(client_id)
        return None if view is None else str(view.value)

    async def create(
        self, name: str, limit: int, window_seconds: int, window_alignment: Alignment
    ) -> ClientRecord:
        """A new client with a random UUID4; :class:`NameTaken` when the name is in use."""
        record = ClientRecord(
            str(uuid.uuid4()), name, limit, window_seconds, _now_iso(), window_alignment
        )
        async with _written_through():
            await self.clients.set(record.id, record.to_json())
        try:
            holder = await self.names.put_if_absent(name, record.id)
            if holder is not None and not await self._take_over_stale(name, holder, record.id):
                raise NameTaken("a client with this name already exists")
        except BaseException:
            # The record of a create that did not get its name must not stay behind.
            with contextlib.suppress(Exception):
                await self.clients.delete(record.id)
            raise
        return record

    async def _take_over_stale(self, name: str, holder: str, new_id: str) -> bool:
        """Claims ``name`` when its holder's record is gone (a delete that stopped halfway)."""
        if await self._read_text(holder) is not None:
            return False
        return bool(await self.names.replace_if_same(name, holder, new_id))

    async def update(
        self,
        client_id: str,
        *,
        limit: int | None,
        window_seconds: int | None,
        window_alignment: Alignment | None,
    ) -> ClientRecord | None:
        """Changes limit, window and/or alignment atomically; None when the client does not
        exist."""
        for _ in range(UPDATE_ATTEMPTS):
            text = await self._read_text(client_id)
            if text is None:
                return None
            current = ClientRecord.from_json(text)
            changed = dataclasses.replace(
                current,
                limit=current.limit if limit is None else limit,
                window_seconds=current.window_seconds if window_seconds is None else window_seconds,
                window_alignment=(
                    current.window_alignment if window_alignment is None else window_alignment
                ),
            )
            if changed == current:
                # Logged again: this may retry an update whose log entry was lost.
                await self._log_change(client_id)
                return current
            async with _written_through():
                replaced = await self.clients.replace_if_same(client_id, text, changed.to_json())
            if replaced:
                self._events += 1
                self._remember(client_id, changed)
                await self._log_change(client_id)
                return changed
        raise UpdateConflict(
            f"the client changed {UPDATE_ATTEMPTS} times during this update; try again"
        )

    async def delete(self, client_id: str) -> ClientRecord | None:
        """Removes the client and frees its name; None when it did not exist."""
        async with _written_through():
            text = await self.clients.remove(client_id)
        if text is None:
            # Logged all the same: this may retry a delete whose log entry was lost.
            await self._log_change(client_id)
            return None
        self._events += 1
        self._remember(client_id, None)
        record = ClientRecord.from_json(text)
        await self.names.remove_if_same(record.name, record.id)
        await self._log_change(client_id)
        return record
