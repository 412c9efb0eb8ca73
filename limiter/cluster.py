"""The asyncio Hazelcast client, connected with bounded waits and reconnecting forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from hazelcast.asyncio import HazelcastClient
from hazelcast.config import ReconnectMode
from hazelcast.errors import HazelcastError
from hazelcast.lifecycle import LifecycleState

import compat
from limiter.errors import BackendUnavailable
from limiter.liveness import Liveness
from limiter.settings import LimiterSettings

__all__ = ["HEARTBEAT_KEY", "ClusterLink", "connect", "sibling_map"]

#: The key the heartbeat reads (never written: a read of an absent key is the cheapest
#: answer a member can give), with a number after it: one key per member is read.
HEARTBEAT_KEY = "ratelimit:heartbeat"
#: Keys the heartbeat chooses from, so that every member owns the partition of one (with
#: 271 partitions spread over 12 members, all 256 miss a member with odds below 1e-9).
HEARTBEAT_CANDIDATES = 256


class ClusterLink:
    """One client and whether it is connected right now.

    Once connected, the client retries lost connections forever, so a cluster that comes
    back is picked up without a restart; while it is away, operations fail at once
    (ClientOfflineError) instead of queueing, and the caller's own timeout bounds the rest.
    ``liveness`` says whether the cluster answers right now (see :mod:`limiter.liveness`);
    :meth:`start_heartbeat` keeps it current while no decision is being made.

    After a reconnection the maps handed out by :meth:`get_map` are created on the
    cluster again before the link counts as connected, as the Java client does and this
    client does not: a cluster that restarted whole knows none of them. A map whose store
    loads it EAGERly (the client registry) is awaited until loaded, on the first
    :meth:`get_map` and after each reconnection, so no read sees a registry still loading.
    """

    def __init__(self, client: HazelcastClient) -> None:
        self.client = client
        self._connected = asyncio.Event()
        #: The member list arrived since the last connection (it only empties on a loss).
        self._members_known = False
        self.liveness = Liveness(connected=lambda: self.connected)
        self._heartbeat: asyncio.Task[None] | None = None
        #: The heartbeat's candidate keys with their partitions, worked out once.
        self._heartbeat_partitions: list[tuple[str, int]] | None = None
        self._at_risk_callbacks: list[Callable[[], None]] = []
        self._maps: dict[str, Any] = {}
        self._recreating: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        client.lifecycle_service.add_listener(self._on_state)
        client.cluster_service.add_listener(
            member_added=self._events_at_risk, member_removed=self._events_at_risk
        )
        compat.add_connection_listener(client, self._events_at_risk, self._events_at_risk)

    def on_events_at_risk(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` whenever map events may have been lost or may be lost for a
        moment: the cluster lost, a member joining or leaving (partitions move to owners
        whose events this client may not hear yet), a connection to one member opening
        (the client registers its listeners on it only afterwards) or closing."""
        self._at_risk_callbacks.append(callback)

    def _events_at_risk(self, *_: object) -> None:
        for callback in self._at_risk_callbacks:
            callback()

    def _on_state(self, state: str) -> None:
        if state == LifecycleState.CONNECTED:
            # Maps handed out mean this is a reconnection: the cluster may have lost them.
            if self._maps:
                if self._recreating is not None:
                    self._recreating.cancel()
                self._recreating = self._loop.create_task(
                    self._recreate_maps(), name="ratelimit-recreate-maps"
                )
                return
            self._connected.set()
        elif state in (
            LifecycleState.DISCONNECTED,
            LifecycleState.SHUTTING_DOWN,
            LifecycleState.SHUTDOWN,
        ):
            self._connected.clear()
            self._members_known = False
            self._events_at_risk()

    def listening_everywhere(self, registration: str) -> bool:
        """Whether the listener ``registration`` is registered on a connection to every
        member the client knows, so that no member's event would go unheard.

        The client does not tell this publicly (see :mod:`compat`). Should its internals
        change shape, this answers False (the caller then trusts no event stream: slower,
        never stale); tests/unit/test_compat.py fails first."""
        try:
            registered = compat.listener_connections(self.client, registration)
            connections = compat.active_connections(self.client)
        except (AttributeError, KeyError):
            return False
        members = self.client.cluster_service.get_members()
        return bool(members) and all(
            connections.get(member.uuid) in registered for member in members
        )

    @property
    def connected(self) -> bool:
        """Connected and holding the member list (which arrives just after connecting).

        Asked on every request: the client copies its member list each time it is read,
        so the list is looked at only until it has arrived."""
        if not self._connected.is_set():
            return False
        if not self._members_known:
            self._members_known = bool(self.client.cluster_service.get_members())
        return self._members_known

    async def get_map(self, name: str) -> Any:
        """The map, once it is loaded (see :meth:`_recreate_maps` for why ``size``)."""
        proxy: Any = await self.client.get_map(name)
        if name not in self._maps:
            await proxy.size()
            self._maps[name] = proxy
        return proxy

    async def _recreate_maps(self) -> None:
        """Creates every map of this link on the cluster again (a no-op for those it
        still has) and waits until each is loaded, retried until that succeeds or the
        connection drops again; then the link counts as connected.

        The wait is a ``size()``: it answers only once a map's initial load is done
        (the member says "retry" until then), while some reads do not wait (an entry
        view of a partition still loading reads as absent), so a client read during
        the load would be told a registered client does not exist."""
        pause = 0.1
        while self.client.lifecycle_service.is_running():
            try:
                for name, proxy in self._maps.items():
                    await compat.create_map_on_cluster(self.client, name)
                    await proxy.size()
            except HazelcastError:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            self._connected.set()
            return

    def start_heartbeat(self, probe_map: Any, interval_seconds: float, ping_seconds: float) -> None:
        """Pings whenever nothing answered for the interval (:meth:`ping_every_member`)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self.liveness.heartbeat(
                    lambda: self.ping_every_member(probe_map), interval_seconds, ping_seconds
                ),
                name="ratelimit-heartbeat",
            )

    async def ping_every_member(self, probe_map: Any) -> None:
        """Returns once any member answered a ``get`` on ``probe_map``; raises when none did.

        One key per member the partition table names as an owner, read at once: a ping of
        one key would go to one member, and while that member dies (its partitions not yet
        promoted) the whole cluster would seem silent and every waiting request would get
        the failure mode. With a key per member, the survivors' answers say "reachable",
        and a request stuck on the dead owner is a contended denial (limiter.liveness).
        """
        keys = await self._heartbeat_keys()
        pings = [asyncio.ensure_future(probe_map.get(key)) for key in keys]
        try:
            for ping in asyncio.as_completed(pings):
                with contextlib.suppress(HazelcastError):
                    await ping
                    return
            raise BackendUnavailable("no member answered the heartbeat")
        finally:
            for ping in pings:
                ping.cancel()
            # The cancelled reads' errors are not anybody's to report.
            await asyncio.gather(*pings, return_exceptions=True)

    async def _heartbeat_keys(self) -> list[str]:
        """A heartbeat key in a partition of each member that owns any, per the client's
        partition table now (the first key when the table names none yet)."""
        if self._heartbeat_partitions is None:
            service = self.client.partition_service
            self._heartbeat_partitions = [
                (f"{HEARTBEAT_KEY}:{n}", await service.get_partition_id(f"{HEARTBEAT_KEY}:{n}"))
                for n in range(HEARTBEAT_CANDIDATES)
            ]
        by_owner: dict[object, str] = {}
        for key, partition in self._heartbeat_partitions:
            owner = self.client.partition_service.get_partition_owner(partition)
            if owner is not None:
                by_owner.setdefault(owner, key)
        return list(by_owner.values()) or [self._heartbeat_partitions[0][0]]

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.client.shutdown()


async def connect(settings: LimiterSettings, **client_config: Any) -> ClusterLink:
    """Starts a client and waits up to ``connect_timeout_seconds`` for the cluster.

    ``client_config`` adds or overrides client options (near caches, smart routing, ...).
    On timeout the client is shut down and :class:`BackendUnavailable` raised.
    """
    config: dict[str, Any] = {
        "cluster_name": settings.hazelcast_cluster_name,
        "cluster_members": settings.member_addresses,
        # Once connected, reconnect forever in the background and fail fast meanwhile.
        "reconnect_mode": ReconnectMode.ASYNC,
        "cluster_connect_timeout": -1,
        "invocation_timeout": settings.decision_timeout_seconds + 1.0,
        "statistics_enabled": False,
        # The owner member waits for the sync backup and answers once. With acks sent
        # straight to the client instead, a client not (yet) connected to the backup
        # member misses the ack and stalls for the member's backup timeout (5 s).
        "backup_ack_to_client_enabled": False,
    }
    config.update(client_config)
    client = HazelcastClient(**config)
    link = ClusterLink(client)
    # The client's first connection retries forever (cluster_connect_timeout=-1, so
    # that later reconnections never give up); the bound here is ours. This is what
    # HazelcastClient.create_and_start does, with a deadline around the start.
    try:
        # Returns once connected and holding the member list (the start is synchronous).
        await asyncio.wait_for(compat.start_client(client), settings.connect_timeout_seconds)
    except TimeoutError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown(), 5.0)
        raise BackendUnavailable(
            f"no connection to the Hazelcast cluster at {settings.hazelcast_members} "
            f"within {settings.connect_timeout_seconds}s"
        ) from None
    return link


def sibling_map(proxy: Any, name: str) -> Any:
    """The map ``name`` on the same client as the map proxy ``proxy``, without a round trip.

    A strategy is built synchronously over the one counter map it is handed; a layout of
    its own that needs another map configuration (the entry processor's shards) reaches
    it through this. Members create a map on its first operation, so nothing has to be
    announced first.
    """
    return compat.map_on_same_client(proxy, name)
