"""The cluster under the tests is real: three JVMs, partitions, backups.

The maps here are registry maps (``ratelimit.clients.*``: sync backup, quorum), which the
members write through to PostgreSQL, so their values are client records (JSON with a
``name``), as the registry writes them."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from hazelcast.asyncio import HazelcastClient

from api.settings import Settings
from limiter import ClusterLink, Policy
from limiter.cluster import connect
from registry import ClientRecord, Registry
from stack import Stack, poll_until
from tests.cluster import CLUSTER_NAME, MEMBERS
from tests.loop import LoopThread

WRITTEN = '{"id":"key","name":"written-via-member-1"}'
KEPT = '{"id":"survivor","name":"kept"}'


def test_three_members_joined(cluster: Stack, link: ClusterLink) -> None:
    """The client sees exactly the three members the runner started."""
    members = link.client.cluster_service.get_members()
    seen = {f"{m.address.host}:{m.address.port}" for m in members}
    assert seen == set(cluster.member_addresses(MEMBERS))


def test_value_written_through_one_member_is_read_through_another(
    cluster: Stack, loop: LoopThread
) -> None:
    """A unisocket client on member 1 writes; one on member 2 reads the same value."""
    first, second = cluster.member_addresses(2)

    async def scenario() -> object:
        writer = await HazelcastClient.create_and_start(
            cluster_name=CLUSTER_NAME, cluster_members=[first], smart_routing=False
        )
        reader = await HazelcastClient.create_and_start(
            cluster_name=CLUSTER_NAME, cluster_members=[second], smart_routing=False
        )
        try:
            assert writer.cluster_service.get_members()  # joined
            name = f"ratelimit.clients.{uuid.uuid4().hex}"
            await (await writer.get_map(name)).put("key", WRITTEN)
            return await (await reader.get_map(name)).get("key")
        finally:
            await writer.shutdown()
            await reader.shutdown()

    assert loop.run(scenario()) == WRITTEN


def test_value_survives_sigkill_of_its_partition_owner(
    cluster: Stack, link: ClusterLink, loop: LoopThread
) -> None:
    """SIGKILL of the member owning a key's partition loses nothing: the backup takes over."""
    name = f"ratelimit.clients.{uuid.uuid4().hex}"
    key = "survivor"

    async def write_and_find_owner() -> int:
        records = await link.get_map(name)
        await records.put(key, KEPT)
        partitions = link.client.partition_service
        owner_uuid = partitions.get_partition_owner(await partitions.get_partition_id(key))
        (owner,) = [m for m in link.client.cluster_service.get_members() if m.uuid == owner_uuid]
        return int(owner.address.port)

    owner_port = loop.run(write_and_find_owner())
    owner_index = owner_port - cluster.layout.member_port
    cluster.kill(cluster.member_name(owner_index))
    try:

        async def read_back() -> object:
            return await (await link.get_map(name)).get(key)

        assert loop.run(read_back(), timeout=60) == KEPT
    finally:
        cluster.start_member(owner_index, MEMBERS)


def test_a_member_leaving_and_rejoining_puts_events_at_risk_until_heard_everywhere(
    cluster: Stack, loop: LoopThread, base_settings: Settings
) -> None:
    """A member killed and started again each warn the link that map events may be lost,
    and the link tells when a listener is registered on every member again: with the
    real client, whose internals it reads for this."""
    warnings: list[int] = []

    async def follow() -> tuple[ClusterLink, str]:
        link = await connect(base_settings)
        members = link.client.cluster_service.get_members
        link.on_events_at_risk(lambda: warnings.append(len(members())))
        probe = await link.client.get_map(f"ratelimit.probe.{uuid.uuid4().hex}")
        registration = await probe.add_entry_listener(added_func=lambda event: None)
        return link, str(registration)

    link, registration = loop.run(follow())

    def on_loop(check: Callable[[], bool]) -> bool:
        """``check`` run on the client's own loop, where its state changes."""

        async def run() -> bool:
            return check()

        return loop.run(run())

    def everywhere(members: int) -> bool:
        """The link sees ``members`` members, each with the listener registered."""
        seen = link.client.cluster_service.get_members
        return on_loop(lambda: len(seen()) == members and link.listening_everywhere(registration))

    victim = MEMBERS - 1
    try:
        poll_until(lambda: everywhere(MEMBERS), 30, "the listener on every member")
        assert not on_loop(lambda: link.listening_everywhere("no-such-registration"))
        warned = len(warnings)
        cluster.kill(cluster.member_name(victim))
        poll_until(lambda: len(warnings) > warned, 60, "a warning of the member's loss")
        poll_until(lambda: everywhere(MEMBERS - 1), 60, "the listener on every member left")
        warned = len(warnings)
    finally:
        cluster.start_member(victim, MEMBERS)
    try:
        poll_until(lambda: len(warnings) > warned, 60, "a warning of the member's return")
        poll_until(lambda: everywhere(MEMBERS), 60, "the listener on the member back")
    finally:
        loop.run(link.close())


class DeafRegistry(Registry):
    """A registry whose listener is registered but whose change events never arrive, as
    when a member drops them (its event queue full)."""

    def _on_change(self, event: object) -> None:
        pass


def test_a_change_whose_event_was_lost_reaches_the_memo_through_the_change_log(
    link: ClusterLink, loop: LoopThread
) -> None:
    """A PATCH and a DELETE whose events a worker never got are in the registry's change
    log (a ringbuffer on the real cluster, configured in hazelcast.xml), and that worker
    drops its memo's record at its next read of the log, then reads the change."""
    suffix = uuid.uuid4().hex
    clients_map = f"ratelimit.clients.{suffix}"

    async def scenario() -> list[object]:
        clients = await link.get_map(clients_map)
        names = await link.get_map(f"ratelimit.names.{suffix}")
        changes = await link.client.get_ringbuffer(f"{clients_map}.changes")
        config = Settings(clients_map=clients_map).registry_config
        writer = Registry(clients, names, changes, config)
        reader = DeafRegistry(
            clients, names, changes, config, listening_everywhere=link.listening_everywhere
        )
        await reader.follow_changes()
        await reader.read_log()
        assert await reader.until_trusted(30)
        record = await writer.create(f"deaf-{suffix}", Policy.single(10, 60))
        seen: list[object] = [await reader.fetch(record.id)]
        await writer.update(record.id, lambda current: Policy.single(20, 60))
        seen.append(reader.remembered(record.id))  # no event: still the old record
        await reader.read_log()
        seen.append(reader.remembered(record.id))
        seen.append(await reader.fetch(record.id))
        await writer.delete(record.id)
        await reader.read_log()
        seen.append(reader.remembered(record.id))
        seen.append(await reader.fetch(record.id))
        return [item.limit if isinstance(item, ClientRecord) else item for item in seen]

    fetched, stale, after_log, refetched, after_delete, gone = loop.run(scenario(), timeout=60)
    assert (fetched, refetched, gone) == (10, 20, None)
    assert isinstance(stale, tuple) and stale[0] and stale[1].limit == 10
    assert after_log == (False, None)
    assert after_delete == (False, None)
