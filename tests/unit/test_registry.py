"""The registry's own errors: what a management route answers when the cluster answers
but the operation cannot be done."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from api.errors import UpdateConflict
from api.registry import ClientRecord, Registry
from limiter import Alignment


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
