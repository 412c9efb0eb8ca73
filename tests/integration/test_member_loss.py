"""Faults 1 and 2: one of three members SIGKILLed under steady load through nginx, then
restarted, for each strategy, on a cluster of this module's own (members 60 ports above
the session's, its replicas and nginx 60 above the session's HTTP parts).

The replicas fail closed, so an answer the cluster did not give is a 503 (or a 429 "too
busy" when the cluster answered other keys meanwhile), never a silent admission; both
count as errors. Their decision timeout is 3 s rather than production's 1 s (lock wait
0.9 and lease 2 times it, as in production; cas attempts as in production): on the
shared 2-core test machine a lock decision (four round trips) took up to 1 s with no
fault at all, and keys whose partitions were migrating to the rejoined member stalled
past 1 s, so at 1 s both showed as errors that are the machine's, not the fault's. 3 s
is still far below the member heartbeat timeout (8 s in hazelcast.xml); a SIGKILLed
member is dropped much sooner than that anyway (its port refuses connections at once).
``RATELIMIT_TEST_FAULT_DECISION_TIMEOUT=1`` runs the same test at production's timeout.

What one run does, per strategy:

1. 12 clients (half with a limit of 30, which they reach during the failover, half 100)
   spend 5 requests each; then every client sends 4 requests a second (open loop), and
   after 2 s the member owning most of their counters is SIGKILLed. The load goes on
   until the cluster has dropped the member and every client has had only decided
   answers for 2 s. Then: every registration still answers (GET /bucket/{id} = 200), and
   each client, one request at a time, is admitted exactly ``limit - used`` more, ``used``
   being what the cluster reports.
2. 6 new clients are created on the two survivors and spend 5 each; under light load
   (every client of both sets once a second) the killed member restarts, the partitions
   are rebalanced onto it; no request fails meanwhile, the first clients stay exactly at
   their limit, and the new ones are admitted exactly their limit in all.

Over-admission: what a client was admitted over the whole test beyond its limit. The
bound is 0 for every strategy, because nothing a strategy relies on lives on one member:

- ``entry_processor``: the shard map (``ratelimit.counters*.shards`` in hazelcast.xml)
  has ``backup-count`` 1, synchronous, and the client leaves backup acks to the owner
  (``backup_ack_to_client_enabled=False``), so the owner answers only once its backup ran
  ``ShardBackupProcessor`` with the windows that changed. A promoted backup holds every count that
  was answered; one that was counted but not answered is an under-admission.
- ``cas``: the same synchronous backup of every ``put_if_absent``/``replace_if_same``;
  and each write is conditional on the value read, so whatever was lost or repeated
  makes a write fail (a retry, or a denial), never count from a stale value.
- ``lock``: the same backup of the counter; the IMap lock is backed up with its
  partition too, and even if it were lost with the member, the write under it is the same
  conditional ``replace_if_same`` (a fencing write): a lost lock costs contention (429
  "too busy"), never an admission.

Under-admission (limit minus admitted, when positive) is the price of failing closed: a
request whose operation was counted (on the promoted backup, or late, after its caller's
deadline) but that got a 503 or a "too busy"; or a request counted twice and answered
once, as when a member that forwarded a client's operation to its owner retries it after
the owner died (MemberLeftException is retryable) while the promoted backup already holds
the first count. It is measured and printed, and bounded by the client's requests that
were undecided or in flight while the member was being dropped.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import time
from collections.abc import Iterator

import aiohttp
import pytest

from api.settings import Settings
from limiter import STRATEGY_NAMES
from stack import Stack
from tests.cluster import MEMBERS, quiet_window
from tests.faults import (
    Figures,
    Kind,
    count,
    http_session,
    spend_until_denied,
    undecided_causes,
    until,
)
from tests.member_loss import (
    Rig,
    create,
    member_property,
    own_stack,
    registered,
    rig_on,
    spend_admitted,
    steady_load,
)

PRODUCTION = Settings()
#: See the module docstring. Lock wait and lease in production's proportions (1, 0.9, 2 s).
DECISION_TIMEOUT_SECONDS = float(os.environ.get("RATELIMIT_TEST_FAULT_DECISION_TIMEOUT", "3"))
LOCK_WAIT_SECONDS = 0.9 * DECISION_TIMEOUT_SECONDS
LOCK_LEASE_SECONDS = 2 * DECISION_TIMEOUT_SECONDS

CLIENTS = 12
SMALL_LIMIT = 30
LARGE_LIMIT = 100
#: Requests each client spends before the fault (all must be admitted).
BEFORE = 5
#: Requests per second of each client during the failover, and during the rejoin.
RATE = 4.0
LIGHT_RATE = 1.0
#: Steady load before the kill; decided-only answers that count as "settled".
STEADY_SECONDS = 2.0
SETTLE_SECONDS = 2.0
#: From the kill until the cluster dropped the member and every client is decided again.
RECOVERY_DEADLINE_SECONDS = 45.0
REJOIN_CLIENTS = 6
REJOIN_LIMIT = 60
#: The member's start, its joining, and the partitions moving onto it.
REJOIN_DEADLINE_SECONDS = 90.0

#: How long members take at most to drop a member that stopped answering.
HEARTBEAT_TIMEOUT_SECONDS = member_property("hazelcast.max.no.heartbeat.seconds")
#: A client whose counter lived on the killed member waits for the cluster to notice
#: (at most the heartbeat timeout) and for its next decided answer (a decision timeout
#: for one in flight, another for its next request); the rest is slack for this machine.
GAP_BOUND_SECONDS = HEARTBEAT_TIMEOUT_SECONDS + 2 * DECISION_TIMEOUT_SECONDS + 5.0
#: See the module docstring for why each is 0.
OVER_ADMISSION_BOUND = {"entry_processor": 0, "cas": 0, "lock": 0}


@pytest.fixture(scope="module")
def fault_stack(registry_database: Stack) -> Iterator[Stack]:
    """The module's own members and nginx, on the session's database."""
    with own_stack() as stack:
        yield stack


@pytest.fixture
def rig(fault_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Rig]:
    """The replicas restarted with the test's strategy, failing closed, on fresh maps."""
    with rig_on(
        fault_stack,
        request.param,
        failure_mode="closed",
        decision_timeout_seconds=DECISION_TIMEOUT_SECONDS,
        lock_wait_seconds=LOCK_WAIT_SECONDS,
        lock_lease_seconds=LOCK_LEASE_SECONDS,
        cas_max_attempts=PRODUCTION.cas_max_attempts,
    ) as rig:
        yield rig


@dataclasses.dataclass
class Loss:
    """What the member loss did."""

    victim: int
    keys_on_victim: int
    figures: Figures
    causes: dict[str, int]
    removed_after: float
    recovered_after: float
    over: dict[str, int]
    under: dict[str, int]
    lost: list[str]


async def _member_loss(
    rig: Rig, http: aiohttp.ClientSession, window: int
) -> tuple[Loss, dict[str, int]]:
    """Phase 1; returns its figures and the clients with their limits."""
    stack, url = rig.stack, rig.url
    limits = {}
    for i in range(CLIENTS):
        limit = SMALL_LIMIT if i % 2 else LARGE_LIMIT
        limits[await create(http, url, limit, window)] = limit
    ids = list(limits)
    before = await spend_admitted(http, url, ids, BEFORE)

    # Their keys fail over to the backups; the others lose their backups and get new ones.
    victim = rig.owner_of_most(ids)

    causes = await undecided_causes(http, rig.replica_ports)
    max_seconds = STEADY_SECONDS + RECOVERY_DEADLINE_SECONDS + 10
    async with steady_load(http, url, ids, RATE, max_seconds) as load:
        await asyncio.sleep(STEADY_SECONDS)  # pacing: steady load before the fault
        killed_at = time.monotonic()
        await asyncio.to_thread(stack.kill, stack.member_name(victim.index))

        def dropped() -> bool:
            owners = rig.view.owned()
            return victim.uuid not in rig.view.members() and None not in owners

        removed_after = await until(
            dropped, RECOVERY_DEADLINE_SECONDS, f"the cluster to drop {victim.address}"
        )

        def settled() -> bool:
            now = time.monotonic()
            bad = [shot.done for shot in load.shots if not shot.decided]
            calm_since = max([killed_at + removed_after, *bad])
            decided_after = {s.client for s in load.shots if s.decided and s.sent > calm_since}
            return now - calm_since >= SETTLE_SECONDS and decided_after >= set(ids)

        await until(
            settled,
            RECOVERY_DEADLINE_SECONDS - removed_after,
            f"every client to be decided again for {SETTLE_SECONDS:.0f}s",
            lambda: f" ({Figures.of(load.shots).describe()})",
        )
    during = load.shots
    causes = await undecided_causes(http, rig.replica_ports) - causes
    undecided = [shot for shot in during if not shot.decided]
    # A request in flight when the member died may fail (a lock decision is four round
    # trips); one answered before that must not have.
    early = [shot for shot in undecided if shot.done < killed_at]
    assert not early, f"errors answered before the kill: {early[:5]}"
    recovered_after = max((shot.done - killed_at for shot in undecided), default=0.0)

    found = await asyncio.gather(*(registered(http, url, c) for c in ids))
    lost = [c for c, (status, _) in zip(ids, found, strict=True) if status != 200]
    used = {c: u for c, (_, u) in zip(ids, found, strict=True) if u is not None}
    rest = await asyncio.gather(
        *(spend_until_denied(http, url, c, limits[c] - used.get(c, 0) + 5) for c in ids)
    )
    after = dict(zip(ids, rest, strict=True))

    admitted = count([*before, *during, *(s for shots in rest for s in shots)], Kind.ADMITTED)
    loss = Loss(
        victim=victim.index,
        keys_on_victim=victim.keys,
        figures=Figures.of(during),
        causes=dict(causes),
        removed_after=removed_after,
        recovered_after=recovered_after,
        over={c: admitted[c] - limits[c] for c in ids if admitted[c] > limits[c]},
        under={c: limits[c] - admitted[c] for c in ids if admitted[c] < limits[c]},
        lost=lost,
    )
    print(
        f"\n[{rig.strategy}] {stack.member_name(victim.index)} SIGKILLed (owned {victim.keys}"
        f"/{CLIENTS} counters): {loss.figures.describe()}, causes {loss.causes}; dropped after "
        f"{removed_after:.1f}s, recovered {recovered_after:.1f}s after the kill; "
        f"over-admission {sum(loss.over.values())} (bound {OVER_ADMISSION_BOUND[rig.strategy]}),"
        f" under-admission {sum(loss.under.values())}, registrations lost {len(lost)}"
    )

    assert lost == [], f"registrations lost: {lost}"
    for client in ids:
        shots = after[client]
        # Exactly the rest of its limit, then the limit: every answer a decision.
        assert [s.kind for s in shots] == [Kind.ADMITTED] * (limits[client] - used[client]) + [
            Kind.OVER_LIMIT
        ], (client, used[client], collections.Counter(s.kind.value for s in shots))
    assert all(n <= OVER_ADMISSION_BOUND[rig.strategy] for n in loss.over.values()), loss.over
    unanswered = collections.Counter(shot.client for shot in undecided)
    # Decided, but possibly counted twice by a retry inside the cluster (module docstring).
    failover = collections.Counter(
        shot.client
        for shot in during
        if shot.decided and shot.sent < killed_at + loss.removed_after and shot.done >= killed_at
    )
    assert all(loss.under[c] <= unanswered[c] + failover[c] for c in loss.under), (
        loss.under,
        unanswered,
        failover,
    )
    assert loss.figures.longest_gap < GAP_BOUND_SECONDS, loss.figures.describe()
    return loss, limits


async def _member_rejoin(
    rig: Rig, http: aiohttp.ClientSession, window: int, victim: int, exhausted: dict[str, int]
) -> None:
    """Phase 2: the killed member restarts under light load."""
    stack, url = rig.stack, rig.url
    fresh = [await create(http, url, REJOIN_LIMIT, window) for _ in range(REJOIN_CLIENTS)]
    before = await spend_admitted(http, url, fresh, BEFORE)
    address = rig.member_address(victim)

    causes = await undecided_causes(http, rig.replica_ports)
    clients = [*exhausted, *fresh]
    async with steady_load(http, url, clients, LIGHT_RATE, REJOIN_DEADLINE_SECONDS + 10) as load:
        started = time.monotonic()
        await asyncio.to_thread(stack.start_member, victim, MEMBERS, REJOIN_DEADLINE_SECONDS)
        joined_after = time.monotonic() - started
        share = rig.view.partition_count // 4
        await until(
            lambda: rig.view.owned()[address] >= share,
            REJOIN_DEADLINE_SECONDS - joined_after,
            f"{address} to own at least {share} partitions",
            lambda: f" (owners: {dict(rig.view.owned())})",
        )
        rebalanced_after = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECONDS)  # pacing: load on the rebalanced cluster
        owned = rig.view.owned()[address]
    figures = Figures.of(load.shots)
    causes = await undecided_causes(http, rig.replica_ports) - causes

    found = await asyncio.gather(*(registered(http, url, c) for c in clients))
    used = dict(zip(clients, (u for _, u in found), strict=True))
    rest = await asyncio.gather(
        *(spend_until_denied(http, url, c, REJOIN_LIMIT - (used[c] or 0) + 5) for c in fresh)
    )
    admitted = count([*before, *load.shots, *(s for shots in rest for s in shots)], Kind.ADMITTED)
    print(
        f"[{rig.strategy}] {stack.member_name(victim)} restarted: joined after "
        f"{joined_after:.1f}s, owned {owned}/{rig.view.partition_count} "
        f"partitions {rebalanced_after:.1f}s after its start; {figures.describe()}, "
        f"causes {dict(causes)}"
    )

    assert figures.error_count == 0, figures.describe()
    assert [c for c, (status, _) in zip(clients, found, strict=True) if status != 200] == []
    # The first clients stay exactly at their limit: nothing admitted, nothing lost.
    assert {c: used[c] for c in exhausted} == exhausted
    assert not any(admitted[c] for c in exhausted)
    for client, shots in zip(fresh, rest, strict=True):
        assert shots[-1].kind is Kind.OVER_LIMIT, collections.Counter(s.kind for s in shots)
        assert admitted[client] == REJOIN_LIMIT, (client, admitted[client])


@pytest.mark.parametrize("rig", STRATEGY_NAMES, indirect=True)
def test_member_loss_and_rejoin_under_load(rig: Rig) -> None:
    """One of three members SIGKILLed under load: no registration lost, no over-admission,
    every client then admitted exactly the rest of its limit; its restart rebalances the
    partitions without a single failed request, and the counts stay exact."""

    async def scenario() -> None:
        window = quiet_window(300)
        async with http_session() as http:
            loss, limits = await _member_loss(rig, http, window)
            await _member_rejoin(rig, http, window, loss.victim, limits)

    asyncio.run(scenario())
