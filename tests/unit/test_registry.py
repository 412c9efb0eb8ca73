"""The registry's own errors: what a management route answers when the cluster answers
but the operation cannot be done."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hazelcast.lifecycle import LifecycleState
from hazelcast.proxy.ringbuffer import ReadResult
from hypothesis import given
from hypothesis import strategies as st

from api.errors import from_registry
from api.metrics import REGISTRY as METRICS
from api.metrics import TALLY, RegistryMetrics
from api.settings import Settings
from limiter import Algorithm, Alignment, Limit, Policy
from limiter.cluster import ClusterLink
from registry import (
    LOG_TRUST_POLLS,
    ClientRecord,
    NameTaken,
    Registry,
    StoreUnavailable,
    UpdateConflict,
    parse_client_id,
)

#: The registry's configuration with the default settings.
CONFIG = Settings().registry_config


class FakeClock:
    """A monotonic clock that moves only when told to, or when the registry sleeps on it
    (a sleep moves it at once and runs what was due meanwhile)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._due: list[tuple[float, Callable[[], object]]] = []

    def __call__(self) -> float:
        return self.now

    def call_at(self, when: float, action: Callable[[], object]) -> None:
        self._due.append((when, action))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [entry for entry in self._due if entry[0] <= self.now]
        self._due = [entry for entry in self._due if entry[0] > self.now]
        for _, action in due:
            action()

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


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
    record = ClientRecord("id-1", "a", "2026-11-30T00:00:00.000Z", Policy.single(5, 60))
    clients = AlwaysChangingClients(record)
    registry = Registry(clients, None, ChangeLog(), CONFIG, clock=FakeClock())

    async def update() -> None:
        await registry.update("id-1", lambda current: Policy.single(6, 60))

    with pytest.raises(UpdateConflict) as conflict:
        asyncio.run(update())
    answer = from_registry(conflict.value)
    assert answer is not None and answer.status_code == 409
    assert 1 < clients.replaces <= 16


def test_a_record_written_before_alignments_reads_as_clock() -> None:
    """A stored record without window_alignment (older versions) counts in clock windows,
    what it was created with."""
    old = '{"id":"i","name":"n","limit":3,"window_seconds":60,"created_at":"t"}'
    assert ClientRecord.from_json(old).window_alignment is Alignment.CLOCK
    new = ClientRecord("i", "n", "t", Policy.single(3, 60, Alignment.FIRST_REQUEST))
    assert ClientRecord.from_json(new.to_json()) == new


def test_a_record_written_before_policies_reads_as_a_list_of_one() -> None:
    """A stored record of the single form alone (no limits) reads as one fixed-window
    limit named default, with its limit, window and alignment."""
    old = (
        '{"id":"i","name":"n","limit":3,"window_seconds":60,"created_at":"t",'
        '"window_alignment":"first_request"}'
    )
    record = ClientRecord.from_json(old)
    assert record.policy == Policy.single(3, 60, Alignment.FIRST_REQUEST)
    assert record.single_form
    assert record.as_dict()["limits"] == [
        {
            "name": "default",
            "algorithm": "fixed_window",
            "limit": 3,
            "window_seconds": 60,
            "window_alignment": "first_request",
            "shadow": False,
        }
    ]


POLICY = Policy(
    (
        Limit("burst", Algorithm.GCRA, 2, 60, burst=1),
        Limit("daily", Algorithm.FIXED_WINDOW, 5, 86400, Alignment.FIRST_REQUEST),
        Limit("trial", Algorithm.SLIDING_WINDOW, 1, 60, shadow=True),
    )
)


def test_a_record_of_several_limits_reads_back_as_written() -> None:
    """A record's JSON lists every limit with only its algorithm's fields, keeps the
    first limit in the top-level fields (window_alignment null for a first limit that is
    not a fixed window), and reads back as the same record."""
    record = ClientRecord("i", "n", "t", POLICY)
    shown = record.as_dict()
    assert (shown["limit"], shown["window_seconds"], shown["window_alignment"]) == (2, 60, None)
    assert shown["limits"][0] == {
        "name": "burst",
        "algorithm": "gcra",
        "limit": 2,
        "window_seconds": 60,
        "burst": 1,
        "shadow": False,
    }
    assert shown["limits"][2]["shadow"] is True and "burst" not in shown["limits"][2]
    assert ClientRecord.from_json(record.to_json()) == record
    assert not record.single_form


def test_a_parsed_record_is_cached() -> None:
    """The same stored text parses to the very same record (the guarded route's path)."""
    text = ClientRecord("i", "n", "t", POLICY).to_json()
    assert ClientRecord.from_json(text) is ClientRecord.from_json(text)


class OneRecordClients:
    """A clients map holding one record; counts the reads that reach it, and can change
    the record while a read is on its way (as another replica's PATCH would)."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record
        self.reads = 0
        #: Of those, the reads that went through the near cache (``get``).
        self.near_cached_reads = 0
        self.during_read: Any = None

    async def get(self, key: str) -> str | None:
        self.near_cached_reads += 1
        view = await self.get_entry_view(key)
        return None if view is None else str(view.value)

    async def get_entry_view(self, key: str) -> EntryView | None:
        self.reads += 1
        if self.during_read is not None:
            meanwhile = self.during_read()
            if asyncio.iscoroutine(meanwhile):
                await meanwhile
        return EntryView(self.record.to_json()) if key == self.record.id else None

    async def add_entry_listener(self, **handlers: Any) -> str:
        return "registration-1"


@dataclasses.dataclass
class Event:
    key: str
    value: str | None


RECORD = ClientRecord("id-1", "a", "2026-11-30T00:00:00.000Z", Policy.single(5, 60))


class ChangeLog:
    """A ringbuffer as the cluster's: sequences from 0, the oldest entries overwritten past
    ``capacity``, and a read from outside [head, tail + 1] moved to the nearest end."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.entries: list[str] = []

    @property
    def head(self) -> int:
        return max(0, len(self.entries) - self.capacity)

    async def add(self, item: str) -> int:
        self.entries.append(item)
        return len(self.entries) - 1

    async def tail_sequence(self) -> int:
        return len(self.entries) - 1

    async def read_many(self, start: int, min_count: int, max_count: int) -> ReadResult:
        start = min(max(start, self.head), len(self.entries))
        items = self.entries[start : start + max_count]
        sequences = list(range(start, start + len(items)))
        return ReadResult(len(items), start + len(items), sequences, items)


def following(
    clients: OneRecordClients,
    everywhere: list[bool] | None = None,
    log: ChangeLog | None = None,
    poll_seconds: float = 60.0,
    clock: FakeClock | None = None,
    observer: RegistryMetrics | None = None,
) -> Registry:
    """A registry whose listener is registered, on every member while ``everywhere[0]``
    (always without it), and which has joined its change log ``log``; its time is
    ``clock``'s (a fake clock of its own without it)."""
    clock = FakeClock() if clock is None else clock
    registry = Registry(
        clients,
        None,
        ChangeLog() if log is None else log,
        dataclasses.replace(CONFIG, log_poll_seconds=poll_seconds, memo_seconds=60),
        listening_everywhere=lambda registration: (
            registration == "registration-1" and (everywhere is None or everywhere[0])
        ),
        observer=observer,
        clock=clock,
        sleep=clock.sleep,
    )

    async def join() -> None:
        await registry.follow_changes()
        await registry.read_log()

    asyncio.run(join())
    return registry


def test_the_memo_serves_a_record_it_read_until_events_are_at_risk() -> None:
    """A record read once is served from the worker's memo (no second read of the map)
    and read again after distrust, which the link calls whenever change events may have
    been missed (connection lost, member joined or left)."""
    clients = OneRecordClients(RECORD)
    registry = following(clients, [True])

    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (True, RECORD)
    assert clients.reads == 1
    registry.distrust()
    assert registry.remembered("id-1") == (False, None)
    asyncio.run(registry.read_log())  # the worker's next poll joins the log again
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (True, RECORD)
    assert clients.reads == 2


def test_the_memo_keeps_nothing_until_the_listener_is_on_every_member() -> None:
    """While some member would not tell this worker of a change, a read is not kept and
    an event drops the record instead of keeping its value; once every member would,
    both are kept again."""
    everywhere = [False]
    clients = OneRecordClients(RECORD)
    registry = following(clients, everywhere)
    assert registry.remembered("id-1") == (False, None)

    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (False, None)
    changed = dataclasses.replace(RECORD, policy=Policy.single(7, 60))
    registry._on_change(Event("id-1", changed.to_json()))
    assert registry.remembered("id-1") == (False, None)

    everywhere[0] = True
    registry._on_change(Event("id-1", changed.to_json()))
    assert registry.remembered("id-1") == (True, changed)


def test_a_read_begun_before_the_listener_was_everywhere_is_not_kept() -> None:
    """A read that began while a member could not yet tell of a change is not kept even
    if the listener reached every member before it was answered: the change it missed
    may have happened in between."""
    everywhere = [False]
    clients = OneRecordClients(RECORD)
    registry = following(clients, everywhere)
    clients.during_read = lambda: everywhere.__setitem__(0, True)

    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (False, None)
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (True, RECORD)


def test_a_read_that_overlapped_a_change_is_not_kept() -> None:
    """A read during which any change event arrived is not kept: it may predate it."""
    clients = OneRecordClients(RECORD)
    registry = following(clients, [True])
    other = dataclasses.replace(RECORD, id="id-2")
    clients.during_read = lambda: registry._on_change(Event("id-2", other.to_json()))

    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (False, None)


class FakeLifecycle:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


class FakeMembership:
    def __init__(self) -> None:
        self.listeners: list[tuple[Any, Any]] = []

    def add_listener(self, member_added: Any = None, member_removed: Any = None) -> None:
        self.listeners.append((member_added, member_removed))


class FakeConnections:
    def __init__(self) -> None:
        self.listeners: list[tuple[Any, Any]] = []

    def add_listener(self, on_connection_opened: Any, on_connection_closed: Any) -> None:
        self.listeners.append((on_connection_opened, on_connection_closed))


def test_the_cluster_link_tells_its_listeners_when_events_are_at_risk() -> None:
    """on_events_at_risk callbacks run when the cluster is lost (or shut down), a member
    joins or leaves, or a connection to a member opens or closes; not on CONNECTED."""
    client: Any = type("Client", (), {})()
    client.lifecycle_service = FakeLifecycle()
    client.cluster_service = FakeMembership()
    client._connection_manager = FakeConnections()

    async def scenario() -> list[str]:
        link = ClusterLink(client)
        seen: list[str] = []
        link.on_events_at_risk(lambda: seen.append("at risk"))
        for listener in client.lifecycle_service.listeners:
            listener(LifecycleState.CONNECTED)
        assert seen == []
        for listener in client.lifecycle_service.listeners:
            listener(LifecycleState.DISCONNECTED)
        assert len(seen) == 1
        for added, removed in client.cluster_service.listeners:
            added("member")
            removed("member")
        assert len(seen) == 3
        for opened, closed in client._connection_manager.listeners:
            opened("connection")
            closed("connection")
        return seen

    assert asyncio.run(scenario()) == ["at risk"] * 5


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


def test_a_new_worker_waits_a_bounded_time_for_its_listener_to_be_everywhere() -> None:
    """until_trusted answers True as soon as every member would tell of a change, and
    False at its deadline while some member would not (the worker then starts anyway)."""
    everywhere = [False]
    clock = FakeClock()
    registry = following(OneRecordClients(RECORD), everywhere, clock=clock)
    started = clock.now
    assert asyncio.run(registry.until_trusted(0.05)) is False
    assert started + 0.05 <= clock.now < started + 0.07

    started = clock.now
    clock.call_at(started + 0.05, lambda: everywhere.__setitem__(0, True))
    assert asyncio.run(registry.until_trusted(5.0)) is True
    assert clock.now - started < 0.07


def test_a_change_whose_event_was_lost_is_read_again_after_the_next_log_poll() -> None:
    """An id found in the change log is dropped from the memo at the next poll, so a
    change whose event never arrived is read from the cluster on the next request."""
    clients = OneRecordClients(RECORD)
    log = ChangeLog()
    registry = following(clients, log=log)
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (True, RECORD)

    changed = dataclasses.replace(RECORD, policy=Policy.single(7, 60))
    clients.record = changed  # another replica's PATCH, its event lost
    asyncio.run(log.add("id-1"))
    assert registry.remembered("id-1") == (True, RECORD)
    asyncio.run(registry.read_log())
    assert registry.remembered("id-1") == (False, None)
    assert asyncio.run(registry.fetch("id-1")) == changed
    assert registry.remembered("id-1") == (True, changed)


def test_reads_kept_in_the_memo_go_past_the_near_cache() -> None:
    """A read the memo keeps is not answered by the near cache, whose invalidation may
    have been lost with the event; a read made while the memo keeps nothing is."""
    clients = OneRecordClients(RECORD)
    registry = following(clients)
    asyncio.run(registry.fetch("id-1"))
    assert (clients.reads, clients.near_cached_reads) == (1, 0)

    registry.distrust()
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert (clients.reads, clients.near_cached_reads) == (2, 1)
    assert registry.remembered("id-1") == (False, None)


def test_the_memo_is_not_served_once_the_log_goes_unread() -> None:
    """The memo answers only while the change log was read to its end within the last
    few polls: a worker whose polls fail reads every record through the near cache."""
    clients = OneRecordClients(RECORD)
    clock = FakeClock()
    registry = following(clients, poll_seconds=1.0, clock=clock)
    asyncio.run(registry.fetch("id-1"))
    clock.advance(LOG_TRUST_POLLS * 1.0)
    assert registry.remembered("id-1") == (True, RECORD)  # the last poll's trust ends now
    clock.advance(0.001)
    assert registry.remembered("id-1") == (False, None)
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert clients.near_cached_reads == 1  # not kept, so the near cache may answer
    asyncio.run(registry.read_log())
    assert registry.remembered("id-1") == (True, RECORD)


def test_entries_overwritten_before_they_were_read_empty_the_memo() -> None:
    """More changes than the log holds between two polls: which records changed is
    unknown, so the memo is emptied and keeps nothing until the log is joined again."""
    clients = OneRecordClients(RECORD)
    log = ChangeLog(capacity=3)
    registry = following(clients, log=log)
    asyncio.run(registry.fetch("id-1"))
    for other in range(4):
        asyncio.run(log.add(f"other-{other}"))

    asyncio.run(registry.read_log())
    assert registry.remembered("id-1") == (False, None)
    asyncio.run(registry.fetch("id-1"))
    assert registry.remembered("id-1") == (False, None)
    asyncio.run(registry.read_log())
    asyncio.run(registry.fetch("id-1"))
    assert registry.remembered("id-1") == (True, RECORD)


def test_a_log_that_started_over_empties_the_memo() -> None:
    """A log shorter than this worker's position (the cluster lost it whole) counts as a
    gap, not as no change."""
    clients = OneRecordClients(RECORD)
    log = ChangeLog()
    for other in range(5):
        asyncio.run(log.add(f"other-{other}"))
    registry = following(clients, log=log)
    asyncio.run(registry.fetch("id-1"))
    log.entries.clear()
    asyncio.run(log.add("id-1"))

    asyncio.run(registry.read_log())
    assert registry.remembered("id-1") == (False, None)


def test_a_read_that_overlapped_a_log_entry_or_began_before_the_log_was_joined_is_not_kept() -> (
    None
):
    """A read during which the log named any client, or that began before this worker
    knew where the log ends, may predate a change: it is answered but not kept."""
    clients = OneRecordClients(RECORD)
    log = ChangeLog()
    registry = following(clients, log=log)
    asyncio.run(log.add("id-2"))
    clients.during_read = registry.read_log
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (False, None)

    registry.distrust()
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (False, None)
    clients.during_read = None
    assert asyncio.run(registry.fetch("id-1")) == RECORD
    assert registry.remembered("id-1") == (True, RECORD)


class WritableClients(OneRecordClients):
    """A clients map that takes updates and removals, and a names map's one call."""

    removed = False

    async def replace_if_same(self, key: str, old: str, new: str) -> bool:
        if old != self.record.to_json():
            return False
        self.record = ClientRecord.from_json(new)
        return True

    async def remove(self, key: str) -> str | None:
        removed, self.removed = self.removed, True
        return None if removed or key != self.record.id else self.record.to_json()

    async def remove_if_same(self, key: str, value: str) -> bool:
        return True


def test_updates_and_deletes_log_the_id_after_writing() -> None:
    """Every PATCH and every DELETE appends the client's id to the change log, also one
    that changes nothing: it may retry one whose log entry was lost."""
    clients = WritableClients(RECORD)
    log = ChangeLog()
    registry = Registry(clients, clients, log, CONFIG, clock=FakeClock())

    async def writes() -> None:
        await registry.update("id-1", lambda current: Policy.single(9, 60))
        await registry.update("id-1", lambda current: Policy.single(9, 60))
        assert await registry.delete("id-1") is not None
        assert await registry.delete("id-1") is None

    asyncio.run(writes())
    assert log.entries == ["id-1"] * 4


class UnreachableLog(ChangeLog):
    """A log no member answers for; ``failed`` is set once it has failed three polls."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0
        self.failed = asyncio.Event()

    async def tail_sequence(self) -> int:
        self.polls += 1
        if self.polls >= 3:
            self.failed.set()
        raise ConnectionError("no member answers")


def _log_failures(cause: str) -> float:
    TALLY.flush()
    value = METRICS.get_sample_value("ratelimit_registry_log_failures_total", {"cause": cause})
    return value or 0.0


def test_failed_and_gapped_log_polls_are_counted_by_cause() -> None:
    """A poll that fails and a poll that finds entries gone are each counted on /metrics
    (ratelimit_registry_log_failures_total), so a memo no longer served shows there."""
    errors, gaps = _log_failures("error"), _log_failures("gap")
    unreachable = UnreachableLog()
    clock = FakeClock()
    registry = Registry(
        OneRecordClients(RECORD),
        None,
        unreachable,
        CONFIG,
        observer=RegistryMetrics(),
        clock=clock,
        sleep=clock.sleep,
    )

    async def poll_a_while() -> None:
        polling = asyncio.get_running_loop().create_task(registry.follow_log())
        await asyncio.wait_for(unreachable.failed.wait(), 5)
        polling.cancel()

    asyncio.run(poll_a_while())
    assert _log_failures("error") >= errors + 3

    log = ChangeLog(capacity=2)
    registry = following(OneRecordClients(RECORD), log=log, observer=RegistryMetrics())
    for other in range(3):
        asyncio.run(log.add(f"other-{other}"))
    asyncio.run(registry.read_log())
    assert _log_failures("gap") == gaps + 1


def test_each_registry_error_has_the_http_answer_it_had() -> None:
    """api.errors maps the registry's errors to the statuses, messages and Retry-After the
    management routes have always answered: 409 for a taken name, 503 for a refused write."""
    taken = from_registry(NameTaken())
    assert taken is not None and taken.status_code == 409
    assert taken.body() == {"error": "a client with this name already exists"}
    refused = from_registry(StoreUnavailable(2))
    assert refused is not None and refused.status_code == 503
    assert refused.headers == {"Retry-After": "2"}
    assert refused.body() == {
        "error": "registry database unavailable: nothing was changed, try again later"
    }
