"""The member-loss test's rig, so that ``tests/integration/test_member_loss.py`` reads as
the test: a stack of its own beside the session's (three members and nginx, and its
replicas restarted for each strategy on fresh maps), a view of its partition table, the
admin calls the test makes through nginx, and a load that runs for the length of a block.

What the test does to the cluster, and everything it asserts, stays in the test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp

from api.settings import Settings
from limiter.entry_processor import counter_entry
from limiter.kv_window import policy_key
from stack import MEMBER_CONFIG, Stack
from tests.cluster import MEMBERS, settings_env
from tests.cluster import test_settings as suite_settings
from tests.cluster import test_stack as suite_stack
from tests.faults import Kind, PartitionView, Shot, SteadyLoad, spend

#: This rig's cluster and HTTP parts sit this far above the session's ports.
PORT_OFFSET = 60
REPLICAS = 3
ADMIN_TOKEN = "member-loss-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def member_property(name: str) -> float:
    """A numeric ``<property>`` of the members' ``hazelcast.xml``."""
    found = re.search(
        rf'<property name="{re.escape(name)}">([0-9.]+)</property>', MEMBER_CONFIG.read_text()
    )
    assert found, f"{name} is not set in {MEMBER_CONFIG}"
    return float(found.group(1))


@contextlib.contextmanager
def own_stack() -> Iterator[Stack]:
    """Three members and nginx of the rig's own (their replicas start per strategy), on
    the session's database (the rig's registry maps are its own by name); everything
    stopped at the end whatever happened."""
    session = suite_stack()
    layout = session.layout.shifted(PORT_OFFSET, database_port=session.layout.database_port)
    stack = session.beside("member-loss", layout)
    try:
        stack.start_members(MEMBERS)
        stack.start_parts([stack.nginx_part(REPLICAS)])
        yield stack
    finally:
        stack.stop()


@dataclasses.dataclass(frozen=True)
class Victim:
    """The member to kill: the one owning most of the clients' counters."""

    index: int
    address: str
    uuid: Any
    #: How many of the clients' counters it owns.
    keys: int


@dataclasses.dataclass
class Rig:
    """The stack, its replicas' strategy and settings, and a view of its partitions."""

    stack: Stack
    strategy: str
    settings: Settings
    view: PartitionView

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.layout.nginx_port}"

    @property
    def replica_ports(self) -> list[int]:
        return [self.stack.replica_port(i) for i in range(REPLICAS)]

    def member_address(self, index: int) -> str:
        return self.stack.member_addresses(MEMBERS)[index]

    def counter_key(self, client_id: str) -> str:
        """The key of the entry holding the client's states: its owner decides."""
        if self.strategy == "entry_processor":
            _, key = counter_entry(
                self.settings.counters_map, self.settings.counter_shards, client_id
            )
            return key
        return policy_key(client_id)

    def victim(self, index: int, client_ids: Sequence[str]) -> Victim:
        """Member ``index`` as a victim: its address, its uuid now, and how many of the
        clients' counters it owns."""
        address = self.member_address(index)
        member_uuid = next(u for u, a in self.view.members().items() if a == address)
        keys = sum(self.view.owner_of(self.counter_key(c)) == address for c in client_ids)
        return Victim(index, address, member_uuid, keys)

    def owner_of_most(self, client_ids: Sequence[str]) -> Victim:
        """The member owning most of the clients' counters (at least a third of them)."""
        owners = collections.Counter(self.view.owner_of(self.counter_key(c)) for c in client_ids)
        address, keys = owners.most_common(1)[0]
        assert address is not None, owners
        index = self.stack.member_addresses(MEMBERS).index(address)
        member_uuid = next(u for u, a in self.view.members().items() if a == address)
        return Victim(index, address, member_uuid, keys)


@contextlib.contextmanager
def rig_on(stack: Stack, strategy: str, **overrides: Any) -> Iterator[Rig]:
    """All three members up (a member an earlier test left down is restarted), and the
    replicas restarted with ``strategy`` and ``overrides`` of the suite's settings, on
    fresh maps; the replicas stopped at the end."""
    for index in range(MEMBERS):
        if stack.pid_of(stack.member_name(index)) is None:
            stack.start_member(index, MEMBERS)
    run = uuid.uuid4().hex[:8]
    settings = suite_settings(
        hazelcast_members=",".join(stack.member_addresses(MEMBERS)),
        hazelcast_cluster_name=stack.cluster_name,
        admin_token=ADMIN_TOKEN,
        counters_map=f"ratelimit.counters.loss-{run}",
        clients_map=f"ratelimit.clients.loss-{run}",
        names_map=f"ratelimit.names.loss-{run}",
        drain_seconds=0.2,
        **overrides,
    )
    replicas = [stack.replica_name(i) for i in range(REPLICAS)]
    stack.stop(replicas)
    stack.start_replicas(REPLICAS, settings_env(settings) | {"RATELIMIT_STRATEGY": strategy})
    view = PartitionView(stack, MEMBERS)
    try:
        yield Rig(stack, strategy, settings, view)
    finally:
        view.close()
        stack.stop(replicas)


async def create(http: aiohttp.ClientSession, url: str, limit: int, window: int) -> str:
    """A new client (``POST /bucket``) with a clock-aligned window; its id."""
    body = {
        "name": f"loss-{uuid.uuid4().hex[:10]}",
        "limit": limit,
        "window_seconds": window,
        "window_alignment": "clock",
    }
    async with http.post(f"{url}/bucket", json=body, headers=ADMIN) as response:
        assert response.status == 201, await response.text()
        record: dict[str, Any] = await response.json()
    return str(record["id"])


async def registered(
    http: aiohttp.ClientSession, url: str, client_id: str
) -> tuple[int, int | None]:
    """GET /bucket/{id}: its status and, when found, the window's ``used``."""
    async with http.get(f"{url}/bucket/{client_id}", headers=ADMIN) as response:
        if response.status != 200:
            return response.status, None
        return 200, int((await response.json())["usage"]["used"])


async def spend_admitted(
    http: aiohttp.ClientSession, url: str, client_ids: Sequence[str], count: int
) -> list[Shot]:
    """``count`` requests of each client, every one of which must be admitted."""
    shots = [
        s
        for batch in await asyncio.gather(*(spend(http, url, c, count) for c in client_ids))
        for s in batch
    ]
    assert all(shot.kind is Kind.ADMITTED for shot in shots), collections.Counter(
        (shot.status, shot.kind.value) for shot in shots
    )
    return shots


@contextlib.asynccontextmanager
async def steady_load(
    http: aiohttp.ClientSession,
    url: str,
    client_ids: Sequence[str],
    rate_per_client: float,
    max_seconds: float,
) -> AsyncIterator[SteadyLoad]:
    """A :class:`SteadyLoad` running for the length of the block, stopped and awaited
    (every request in flight answered) when it ends, whatever happened."""
    load = SteadyLoad(http, url, client_ids, rate_per_client, max_seconds)
    running = asyncio.get_running_loop().create_task(load.run())
    try:
        yield load
    finally:
        load.stop()
        await running
