"""A decision whose call its owner applied and backed up but never answered, for each
strategy, every time: the owner SIGKILLed with the call's write held by its backup.

The session's spare members, with the fault hook on (tests/stall.py, 230 ports above
the session's; tests/conftest.py), the strategy built in process on a fresh counters map. One
decision of cost :data:`COST` for a fresh client, with a stall of :data:`STALL_SECONDS`
in place on the partition of the client's key: the owner applies the decision's write
and sends its backup, which waits behind the stall on the backup member, so the owner
cannot answer; the owner is frozen, the backup member applies the write, and the owner is
SIGKILLed (tests/stall.py says why in that order). The call fails at the client with
``TargetDisconnectedError``, and the promoted backup holds the write.

What must follow: the decision is admitted (a request the cluster counted was admitted,
not a "too busy" denial and not the failure mode), and the stored count after failover
is the cost exactly (the call sent again is recognised, not counted twice). The decision
timeout (:data:`DECISION_TIMEOUT_SECONDS`) outlasts the stall and the failover.

``test_a_stalled_write_is_held_by_the_promoted_backup`` checks the hook itself, with a
plain ``put`` that nobody sends again: after failover the promoted backup has its value.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from api.settings import Settings
from limiter import STRATEGY_NAMES, BackendError, connect, create_strategy
from limiter.cluster import ClusterLink
from limiter.entry_processor import EntryProcessorStrategy, shard_entry_of
from limiter.kv_window import policy_key
from limiter.policy import Policy
from limiter.policy_rule import PolicyDecision
from limiter.processor_wire import processor_key
from limiter.rule import WindowState
from limiter.strategy import Strategy
from stack import Stack
from tests.cluster import MEMBERS, quiet_window
from tests.cluster import test_settings as suite_settings
from tests.loop import LoopThread
from tests.stall import Failover, Stall, Stalls, restore_members

#: How long the stall holds the call: far below Hazelcast's backup timeout (5 s), after
#: which the owner would answer without its backup's ack.
STALL_SECONDS = 3.0
#: Outlasts the stall and the failover (the member is dropped about a second after the
#: kill), so a decision that waits for its call to be sent again is not cut short.
DECISION_TIMEOUT_SECONDS = 10.0
LIMIT = 10
COST = 3
#: Bounds of one case's waits on the test's side.
CASE_TIMEOUT_SECONDS = 60.0
READ_DEADLINE_SECONDS = 15.0


@pytest.fixture
def stall_members(spare_members: Stack) -> Stack:
    """The session's spare members (tests/conftest.py): the fault hook is on."""
    return spare_members


@dataclasses.dataclass
class Rig:
    """One case's client on the stall cluster, its settings (fresh maps) and its stalls."""

    stack: Stack
    loop: LoopThread
    settings: Settings
    link: ClusterLink
    stalls: Stalls


@pytest.fixture
def rig(stall_members: Stack) -> Iterator[Rig]:
    """All three members up (one an earlier case killed is restarted) with the partitions
    spread over them, and a client of its own with the strategies' settings."""
    stack = stall_members
    started = time.monotonic()
    restore_members(stack)
    loop = LoopThread()
    run = uuid.uuid4().hex[:8]
    settings = suite_settings(
        hazelcast_members=",".join(stack.member_addresses(MEMBERS)),
        hazelcast_cluster_name=stack.cluster_name,
        counters_map=f"ratelimit.counters.retried-{run}",
        decision_timeout_seconds=DECISION_TIMEOUT_SECONDS,
        lock_wait_seconds=0.9 * DECISION_TIMEOUT_SECONDS,
        lock_lease_seconds=2 * DECISION_TIMEOUT_SECONDS,
    )
    try:
        link = loop.run(connect(settings))
    except BaseException:
        loop.close()
        raise
    try:

        async def ready() -> Stalls:
            stalls = await Stalls.on(stack, link)
            await stalls.spread()
            await stalls.key_in(0)  # finds a key per partition once, before any stall
            return stalls

        stalls = loop.run(ready())
        print(f"\n[rig] ready after {time.monotonic() - started:.1f}s")
        yield Rig(stack, loop, settings, link, stalls)
    finally:
        loop.run(link.close())
        loop.close()


class StallBeforeWrite:
    """The counters map as the lock strategy sees it, with a stall placed on the key's
    partition just before the strategy's first write to it (``put_if_absent``,
    ``replace_if_same``, ``set``, ``put`` or ``execute_on_key``); every other call passes
    through unchanged.

    Why not before the decision, as for the other strategies: the lock's own operations
    (``try_lock``, then ``unlock``) change the partition too and have synchronous backups,
    so a stall sent first would hold the ``try_lock``, not the write. The write under the
    lock is the call whose loss after it was applied must count once, so the stall goes
    after the lock is taken and the state read, right before the write.
    """

    WRITES = frozenset({"put_if_absent", "replace_if_same", "set", "put", "execute_on_key"})

    def __init__(self, counters: Any, place: Callable[[Any], Awaitable[Stall]]) -> None:
        self._counters = counters
        self._place = place
        #: The stall, once placed.
        self.placed: asyncio.Future[Stall] = asyncio.get_running_loop().create_future()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._counters, name)
        if name not in self.WRITES:
            return attribute

        async def write(key: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.placed.done():
                self.placed.set_result(await self._place(key))
            return await attribute(key, *args, **kwargs)

        return write


def entry_key(strategy: Strategy, client_id: str) -> str:
    """The key whose owner decides the client: its shard entry, or its own key."""
    if isinstance(strategy, EntryProcessorStrategy):
        return shard_entry_of(processor_key(client_id), strategy.shard_count)
    return policy_key(client_id)


async def stored_count(strategy: Strategy, client_id: str, policy: Policy) -> int:
    """The count the client's window holds now (0: none stored)."""
    states, _ = await strategy.stored_states(client_id, policy)
    state = states[0]
    assert state is None or isinstance(state, WindowState), state
    return 0 if state is None else state.count


async def read_count(strategy: Strategy, client_id: str, policy: Policy) -> int:
    """:func:`stored_count`, asked again while the cluster settles after the kill."""
    deadline = time.monotonic() + READ_DEADLINE_SECONDS
    while True:
        try:
            return await stored_count(strategy, client_id, policy)
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)  # pacing: the next read after a failed one


def outcome(decision: PolicyDecision | BaseException) -> str:
    """A decision or the error in its place, in a word or two."""
    if isinstance(decision, BaseException):
        return f"{type(decision).__name__}: {decision}"
    return "admitted" if decision.allowed else f"denied ({decision.reason.name.lower()})"


@pytest.mark.parametrize("strategy_name", STRATEGY_NAMES)
def test_a_call_applied_before_its_owner_died_counts_once(rig: Rig, strategy_name: str) -> None:
    """A write applied and backed up before its owner was SIGKILLed is admitted and stored once."""
    client_id = f"retried-{uuid.uuid4().hex[:10]}"
    policy = Policy.single(LIMIT, quiet_window(60))

    async def scenario() -> tuple[PolicyDecision | BaseException, int, Failover, float]:
        link, stalls = rig.link, rig.stalls
        counters: Any = await link.get_map(rig.settings.counters_map)
        wrapped: StallBeforeWrite | None = None
        if strategy_name == "lock":
            wrapped = StallBeforeWrite(counters, lambda key: stalls.send(key, STALL_SECONDS))
            counters = wrapped
        strategy = create_strategy(
            rig.settings, counters, name=strategy_name, liveness=link.liveness
        )
        link.start_heartbeat(
            counters, rig.settings.heartbeat_interval_seconds, DECISION_TIMEOUT_SECONDS
        )
        try:
            key = entry_key(strategy, client_id)
            if wrapped is None:
                placed = await stalls.send(key, STALL_SECONDS)
            started = time.monotonic()
            deciding = asyncio.ensure_future(strategy.decide_policy(client_id, policy, COST))
            if wrapped is not None:
                placed = await asyncio.wait_for(wrapped.placed, DECISION_TIMEOUT_SECONDS)
            assert placed.partition == await stalls.partition_of(key)

            async def applied() -> bool:
                return await stored_count(strategy, client_id, policy) == COST

            failover = await stalls.fail_over(placed, applied, lambda: not deciding.done())
            decision: PolicyDecision | BaseException
            try:
                decision = await deciding
            except BackendError as error:
                decision = error
            took = time.monotonic() - started
            await stalls.promoted(placed, failover)
            stored = await read_count(strategy, client_id, policy)
            await placed.settle()
            return decision, stored, failover, took
        finally:
            with contextlib.suppress(Exception):
                await strategy.close()

    decision, stored, failover, took = rig.loop.run(scenario(), timeout=CASE_TIMEOUT_SECONDS)
    print(
        f"[{strategy_name}] {outcome(decision)} after {took:.2f}s, stored {stored} for a "
        f"cost of {COST}; {failover.describe()}"
    )
    assert (outcome(decision), stored) == ("admitted", COST), (
        f"{strategy_name}: {outcome(decision)}, stored {stored}, for one decision of cost "
        f"{COST} whose call was applied on the owner before it was SIGKILLed"
    )


def test_a_stalled_write_is_held_by_the_promoted_backup(rig: Rig) -> None:
    """A put held by a stall is on the promoted backup once its owner is SIGKILLed."""
    key = f"held-{uuid.uuid4().hex[:10]}"

    async def scenario() -> tuple[object, object, Failover]:
        plain = await rig.link.get_map(f"ratelimit.stall-check-{uuid.uuid4().hex[:8]}")
        placed = await rig.stalls.send(key, STALL_SECONDS)
        put = asyncio.ensure_future(plain.put(key, "held"))

        async def applied() -> bool:
            return bool(await plain.get(key) == "held")

        failover = await rig.stalls.fail_over(placed, applied, lambda: not put.done())
        lost = (await asyncio.gather(put, return_exceptions=True))[0]
        await rig.stalls.promoted(placed, failover)
        await placed.settle()
        return lost, await plain.get(key), failover

    lost, found, failover = rig.loop.run(scenario(), timeout=CASE_TIMEOUT_SECONDS)
    print(f"[put] the caller got {lost!r}; after failover {found!r}; {failover.describe()}")
    assert isinstance(lost, Exception), f"the held put was answered: {lost!r}"
    assert found == "held", f"the promoted backup {failover.backup} holds {found!r}"
