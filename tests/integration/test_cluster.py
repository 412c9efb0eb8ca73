"""The cluster under the tests is real: three JVMs, partitions, backups.

The maps here are registry maps (``ratelimit.clients.*``: sync backup, quorum), which the
members write through to PostgreSQL, so their values are client records (JSON with a
``name``), as the registry writes them."""

from __future__ import annotations

import uuid

from hazelcast.asyncio import HazelcastClient

from limiter import ClusterLink
from stack.runner import Stack
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
    owner_index = owner_port - cluster.member_base_port
    cluster.kill(cluster.member_name(owner_index))
    try:

        async def read_back() -> object:
            return await (await link.get_map(name)).get(key)

        assert loop.run(read_back(), timeout=60) == KEPT
    finally:
        cluster.start_member(owner_index, MEMBERS)
