"""The registry's own errors: what a management route answers when the cluster answers
but the operation cannot be done."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from hazelcast.lifecycle import LifecycleState
from hypothesis import given
from hypothesis import strategies as st

from api.errors import UpdateConflict
from api.registry import ClientRecord, Registry, parse_client_id
from limiter import Alignment
from limiter.cluster import ClusterLink


@dataclasses.dataclass
class EntryView:
    value: str


class AlwaysChangingClients:
    """A clients map whose record changes between every read and the write after it."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record
        self.replaces = 0

    async def get_entry_view(self, key: str) -> Any:
        return EntryView(self.record.to_json())

    async def replace_if_same(self, key: str, old: str, new: str) -> bool:
        self.replaces += 1
        return False


def test_an_update_that_keeps_losing_its_races_is_a_conflict_not_an_outage() -> None:
    """A PATCH whose every compare-and-set loses is a 409 UpdateConflict after a bounded
    number of attempts, never a 503 "cluster unavailable"."""
    record = ClientRecord("id-1", "a", 5, 60, "2026-11-30T00:00:00.000Z", Alignment.CLOCK)
    clients = AlwaysChangingClients(record)
    registry = Registry(clients, names=None)

    async def update() -> None:
        await registry.update("id-1", limit=6, window_seconds=None, window_alignment=None)

    with pytest.raises(UpdateConflict) as conflict:
        asyncio.run(update())
    assert conflict.value.status_code == 409
    assert 1 < clients.replaces <= 16


def test_a_record_written_before_alignments_reads_as_clock() -> None:
    """A stored record without window_alignment (older versions) counts in clock windows,
    what it was created with."""
    old = '{"id":"i","name":"n","limit":3,"window_seconds":60,"created_at":"t"}'
    assert ClientRecord.from_json(old).window_alignment is Alignment.CLOCK
    new = ClientRecord("i", "n", 3, 60, "t", Alignment.FIRST_REQUEST)
    assert ClientRecord.from_json(new.to_json()) == new


class OneRecordClients:
    """A clients map holding one record; counts the reads that reach it."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record
        self.reads = 0

    async def get(self, key: str) -> str | None:
        self.reads += 1
        return self.record.to_json() if key == self.record.id else None


def test_the_memo_serves_a_record_it_read_until_the_connection_drops() -> None:
    """A record read once is served from the worker's memo (no second read of the map)
    while the memo may trust it, and read again after forget_all, which the connection's
    loss calls because change events may have been missed meanwhile."""
    record = ClientRecord("id-1", "a", 5, 60, "2026-11-30T00:00:00.000Z", Alignment.CLOCK)
    clients = OneRecordClients(record)
    registry = Registry(clients, names=None, memo_ttl_seconds=60)
    registry._listening = True  # as after follow_changes(): the memo may keep reads

    assert asyncio.run(registry.fetch("id-1")) == record
    assert registry.remembered("id-1") == (True, record)
    registry.forget_all()
    assert registry.remembered("id-1") == (False, None)
    assert asyncio.run(registry.fetch("id-1")) == record
    assert clients.reads == 2


class FakeLifecycle:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


def test_the_cluster_link_tells_its_listeners_when_the_cluster_is_lost() -> None:
    """on_disconnect callbacks run on DISCONNECTED (and shutdown), not on CONNECTED."""
    client = type("Client", (), {"lifecycle_service": FakeLifecycle()})()

    async def scenario() -> list[str]:
        link = ClusterLink(client)
        seen: list[str] = []
        link.on_disconnect(lambda: seen.append("lost"))
        for listener in client.lifecycle_service.listeners:
            listener(LifecycleState.CONNECTED)
        assert seen == []
        for listener in client.lifecycle_service.listeners:
            listener(LifecycleState.DISCONNECTED)
        return seen

    assert asyncio.run(scenario()) == ["lost"]


def _uuid_spellings() -> st.SearchStrategy[str]:
    """Ids as callers may spell them: canonical, upper case, braces, no hyphens, urn."""
    spelled = st.sampled_from(
        [str, lambda u: str(u).upper(), lambda u: f"{{{u}}}", lambda u: u.hex, lambda u: u.urn]
    )
    return st.builds(lambda spell, u: spell(u), spelled, st.uuids())


@given(st.one_of(_uuid_spellings(), st.text(max_size=70), st.from_regex(r"[0-9a-f-]{36}")))
def test_a_client_id_reads_as_uuid_parsing_reads_it(raw: str) -> None:
    """Every spelling names the client ``str(uuid.UUID(raw))`` names, and anything that
    is not a UUID (or is longer than 64 characters) names none."""
    try:
        expected: str | None = str(uuid.UUID(raw)) if len(raw) <= 64 else None
    except ValueError:
        expected = None
    assert parse_client_id(raw) == expected
