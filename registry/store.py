"""The registry's two maps on the cluster, and every read and write of them.

Two maps (both with a synchronous backup and the registry quorum in hazelcast.xml):

- ``RATELIMIT_CLIENTS_MAP``: id → record, a JSON string (:class:`ClientRecord`).
  Replicas read it through a near cache (:func:`near_cache_config`), so the guarded
  route costs one local lookup plus the decision's round trip; a change is pushed to
  every replica's near cache by the cluster (batched, about a second) and the near
  cache's TTL bounds a lost push.
- ``RATELIMIT_NAMES_MAP``: name → id. ``put_if_absent`` on it decides atomically which of
  two concurrent creates of one name wins.

Both survive a restart of the whole cluster: the members write every record through to
PostgreSQL before changing their memory (``ratelimit.store`` in the member jar), and
load both maps from it when the cluster starts; a name is durable inside its record (the
database holds each name once). A write the database refuses fails whole and changes
nothing: :class:`StoreUnavailable`, or :class:`NameTaken` when the database already
holds the name. Reads use memory only, so they go on while the database is away.

Order of writes, so that a crash between two of them never breaks a name for good:
create writes the record first and claims the name second (a lost claim deletes the
record); delete removes the record first and the name second. Only the record's write
reaches the database, so a database that is away stops a create or a delete at its
first step, before anything changed. A name left pointing at a missing record is
therefore stale, and the next create of that name takes it over with
``replace_if_same``, which is atomic too.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from hazelcast.config import InMemoryFormat
from hazelcast.errors import UndefinedErrorCodeError

from limiter import Policy
from registry.config import RegistryConfig
from registry.errors import NameTaken, StoreUnavailable
from registry.records import ClientRecord

__all__ = [
    "STORE_NAME_TAKEN",
    "STORE_RETRY_AFTER_SECONDS",
    "STORE_UNAVAILABLE",
    "Store",
    "near_cache_config",
    "utc_now",
]

#: What the members' map store throws (hazelcast/src/main/java/ratelimit/store), as the
#: client reports a server exception it has no class of its own for.
STORE_UNAVAILABLE = "ratelimit.store.RegistryUnavailableException"
STORE_NAME_TAKEN = "ratelimit.store.NameTakenException"
#: Retry-After of a write refused for want of the database.
STORE_RETRY_AFTER_SECONDS = 2


def near_cache_config(config: RegistryConfig) -> dict[str, dict[str, Any]]:
    """Client option ``near_caches`` for the registry map."""
    return {
        config.clients_map: {
            "invalidate_on_change": True,
            "time_to_live": config.near_cache_ttl_seconds,
            "in_memory_format": InMemoryFormat.OBJECT,
        }
    }


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@contextlib.asynccontextmanager
async def _written_through() -> AsyncIterator[None]:
    """One write of a record, which the members store in PostgreSQL before memory: the
    store's refusal becomes the registry's error (nothing was written, in memory or on
    disk); any other cluster error passes on to the caller's ``cluster_call``."""
    try:
        yield
    except UndefinedErrorCodeError as error:
        server_class = error.args[1] if len(error.args) > 1 else ""
        if server_class == STORE_NAME_TAKEN:
            raise NameTaken() from None
        if server_class == STORE_UNAVAILABLE:
            raise StoreUnavailable(STORE_RETRY_AFTER_SECONDS) from None
        raise


class Store:
    """Reads and writes of the ``clients`` and ``names`` map proxies; reads here go past
    the near cache (``get_entry_view``), except :meth:`read_near`."""

    def __init__(
        self, clients: Any, names: Any, *, wall_clock: Callable[[], datetime.datetime] = utc_now
    ) -> None:
        self.clients = clients
        self.names = names
        self._wall_clock = wall_clock

    async def read_text(self, client_id: str) -> str | None:
        """The record's JSON as the cluster has it now, bypassing the near cache."""
        view = await self.clients.get_entry_view(client_id)
        return None if view is None else str(view.value)

    async def read_near(self, client_id: str) -> str | None:
        """The record's JSON through the near cache (which may lag a change)."""
        text: str | None = await self.clients.get(client_id)
        return text

    async def read(self, client_id: str) -> ClientRecord | None:
        """The record as the cluster has it now, bypassing the near cache."""
        text = await self.read_text(client_id)
        return None if text is None else ClientRecord.from_json(text)

    async def find(self, name: str) -> ClientRecord | None:
        """The client that holds ``name`` now (bypassing the near cache), or None.

        The way back for an admin whose create answer was lost: the name is taken, and
        this tells by whom. A name left behind by a delete that stopped halfway has no
        record, and counts as free.
        """
        client_id = await self.names.get(name)
        return None if client_id is None else await self.read(str(client_id))

    async def create(self, name: str, policy: Policy) -> ClientRecord:
        """A new client with a random UUID4; :class:`NameTaken` when the name is in use."""
        created_at = self._wall_clock().isoformat(timespec="milliseconds")
        record = ClientRecord(str(uuid.uuid4()), name, created_at.replace("+00:00", "Z"), policy)
        async with _written_through():
            await self.clients.set(record.id, record.to_json())
        try:
            holder = await self.names.put_if_absent(name, record.id)
            if holder is not None and not await self._take_over_stale(name, holder, record.id):
                raise NameTaken()
        except BaseException:
            # The record of a create that did not get its name must not stay behind.
            with contextlib.suppress(Exception):
                await self.clients.delete(record.id)
            raise
        return record

    async def _take_over_stale(self, name: str, holder: str, new_id: str) -> bool:
        """Claims ``name`` when its holder's record is gone (a delete that stopped halfway)."""
        if await self.read_text(holder) is not None:
            return False
        return bool(await self.names.replace_if_same(name, holder, new_id))

    async def replace(self, client_id: str, text: str, record: ClientRecord) -> bool:
        """Writes ``record`` if the stored JSON is still ``text``; False if it changed."""
        async with _written_through():
            return bool(await self.clients.replace_if_same(client_id, text, record.to_json()))

    async def remove(self, client_id: str) -> ClientRecord | None:
        """Removes the record (not yet its name: :meth:`release_name`); None if none."""
        async with _written_through():
            text = await self.clients.remove(client_id)
        return None if text is None else ClientRecord.from_json(text)

    async def release_name(self, record: ClientRecord) -> None:
        """Frees ``record``'s name if it still points at it (after :meth:`remove`)."""
        await self.names.remove_if_same(record.name, record.id)
