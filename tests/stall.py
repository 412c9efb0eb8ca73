"""A member-side fault hook, and how a test uses it: a call whose owner applied it (and
sent its synchronous backup) but died before answering, every time rather than by luck.

The hook (``hazelcast/src/main/java/ratelimit/fault``) runs only on members started with
``-Dratelimit.faults=on`` (:data:`FAULTS_ON`); any other member refuses it with an error
naming the property. :func:`stall_cluster` starts three such members of a test's own.

How a call is held (:meth:`Stalls.send`): a :class:`FaultStallProcessor` goes to a key of
the map :data:`FAULTS_MAP` in the partition of the key to stall. Its owner writes a marker;
its backup sleeps on the partition's backup member, on the partition thread there. A
partition's backup replica is the same member for every map and one partition thread
serves every map of a partition, so a call on that partition which the owner runs after
the stall is applied there, but its synchronous backup waits behind the sleep, and the
owner cannot answer it (the service's client leaves backup acks to the owner).

Ordering: the stall must reach the owner's partition thread before the call. It does
when it is *sent* first on the same client: both go to the partition's owner on the one
connection the client has to it, in the order they were written; that member's I/O thread
reads them in that order and queues both on the partition's thread, which runs them in
turn and sends their backups, in that order, on its one connection to the backup member,
whose partition thread runs them in turn. :meth:`Stalls.send` returns once the stall is
written (the asyncio client writes a request when its coroutine first runs), so a call
started after it is behind it. :meth:`Stalls.fail_over` checks it after the fact too:
the call must be applied on the owner and still unanswered.

Why the owner is frozen before it is killed (:meth:`Stalls.fail_over`): a member runs an
operation from another member only while it lists that member (Hazelcast's
``OperationRunnerImpl.ensureValidMember``, when the partition thread takes the operation
from its queue). A SIGKILLed member is dropped within about a second (docs/faults.md), so
if the owner were killed during the sleep, the backups queued behind it would be refused
once it ends (``CallerNotMemberException``) and the promoted backup would not hold the
write (measured: a held ``put`` was gone from it in 2 runs of 2): a call sent again would
then count once without being recognised, and the test would prove nothing. So the owner
is frozen (SIGSTOP) while its answer is held, which a frozen member cannot send; the
backup's sleep ends while the owner is still a member (a frozen one is dropped only after
``hazelcast.max.no.heartbeat.seconds``, 8 s); the backup member applies the held write;
and only then is the owner SIGKILLed. The caller sees the connection to the owner close
(``TargetDisconnectedError``) and the promoted backup holds the write: the retry path,
every time. ``test_a_stalled_write_is_held_by_the_promoted_backup`` shows the hook does
this.

Only loopback; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)

from limiter.cluster import ClusterLink
from limiter.processor_wire import PROCESSOR_FACTORY_ID
from stack import Stack
from tests.cluster import MEMBERS
from tests.cluster import test_stack as suite_stack

#: The member JVM option that turns the fault hooks on (off otherwise).
FAULTS_PROPERTY = "ratelimit.faults"
FAULTS_ON = (f"-D{FAULTS_PROPERTY}=on",)
#: The map the stalls write their markers to (the members' default map configuration:
#: one synchronous backup).
FAULTS_MAP = "ratelimit.faults"

#: The contract's numbers (tests/vectors/processor_wire.csv).
FAULT_STALL_PROCESSOR_ID = 20
ACTION_STALL = 1
ACTION_ASK = 2
STALL_UNKNOWN = 0
STALL_SLEEPING = 1
STALL_DONE = 2

#: This cluster's ports sit this far above the session's (no other test uses 230).
PORT_OFFSET = 230
#: How much of the stall must be left when the owner is frozen: the call's answer is
#: held until the backup's sleep ends, which is no earlier than the stall's send plus its
#: sleep, so a freeze before then always comes before the answer could leave.
FREEZE_MARGIN_SECONDS = 0.5
#: Polls: how often, and how long the backup member may take past the sleep.
POLL_SECONDS = 0.02
BACKUP_DEADLINE_SECONDS = 10.0
PROMOTION_DEADLINE_SECONDS = 30.0
#: Member starts and the partitions spreading over them.
START_DEADLINE_SECONDS = 90.0

T = TypeVar("T")


class FaultStallProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.fault.FaultStallProcessor``: ``ACTION_STALL`` writes
    the marker ``stall_id`` and sleeps ``sleep_ms`` on the partition's backup member;
    ``ACTION_ASK`` answers ``[state]`` of stall ``stall_id`` on the member that owns the
    key it is sent to (``STALL_UNKNOWN``, ``STALL_SLEEPING``, ``STALL_DONE``)."""

    def __init__(self, action: int, stall_id: int, sleep_ms: int) -> None:
        self.action = action
        self.stall_id = stall_id
        self.sleep_ms = sleep_ms

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_int(self.action)
        output.write_long(self.stall_id)
        output.write_long(self.sleep_ms)

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return FAULT_STALL_PROCESSOR_ID


def stall_stack() -> Stack:
    """Three members with the fault hooks on, :data:`PORT_OFFSET` above the session's,
    without the registry's store (these tests use no client registry, so no database)."""
    session = suite_stack()
    settings = dataclasses.replace(
        session.cluster.settings,
        registry_store=False,
        jvm_options=(*session.cluster.settings.jvm_options, *FAULTS_ON),
    )
    return Stack(
        session.layout.shifted(PORT_OFFSET),
        session.run_dir / "stall",
        f"{session.cluster_name}-stall",
        settings,
    )


@contextlib.contextmanager
def stall_cluster() -> Iterator[Stack]:
    """:func:`stall_stack` started; every member stopped at the end whatever happened (a
    frozen one is thawed first, so that it stops at once)."""
    stack = stall_stack()
    try:
        stack.start_members(MEMBERS, START_DEADLINE_SECONDS)
        yield stack
    finally:
        thaw_all(stack)
        stack.stop()


def thaw_all(stack: Stack) -> None:
    """SIGCONT to every member still running (a no-op for one that is not frozen)."""
    for index in range(MEMBERS):
        pid = stack.pid_of(stack.member_name(index))
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGCONT)


def restore_members(stack: Stack) -> None:
    """Restarts any member an earlier test killed (the stack waits until all have joined)."""
    for index in range(MEMBERS):
        if stack.pid_of(stack.member_name(index)) is None:
            stack.start_member(index, MEMBERS, START_DEADLINE_SECONDS)


@dataclasses.dataclass
class Stall:
    """One stall in place: the partition it holds, its owner then, and when it was sent
    (event-loop time); :meth:`settle` collects its own answer (an error, once the owner
    is killed)."""

    stall_id: int
    partition: int
    owner: str
    owner_index: int
    sleep_seconds: float
    sent_at: float
    task: asyncio.Task[Any]

    @property
    def ends_no_earlier_than(self) -> float:
        """The backup's sleep starts after the send, so it cannot end before this."""
        return self.sent_at + self.sleep_seconds

    async def settle(self) -> BaseException | None:
        """The stall's own call, awaited: None if answered, else its error."""
        result = (await asyncio.gather(self.task, return_exceptions=True))[0]
        return result if isinstance(result, BaseException) else None


@dataclasses.dataclass(frozen=True)
class Failover:
    """What :meth:`Stalls.fail_over` did, in seconds from the stall's send."""

    owner: str
    backup: str
    applied_after: float
    frozen_after: float
    backup_done_after: float
    killed_after: float

    def describe(self) -> str:
        return (
            f"owner {self.owner} applied the call at {self.applied_after:.2f}s, frozen at "
            f"{self.frozen_after:.2f}s; backup {self.backup} done at "
            f"{self.backup_done_after:.2f}s; owner SIGKILLed at {self.killed_after:.2f}s"
        )


class Stalls:
    """Stalls sent on one client (the one whose calls are to be held), on ``stack``."""

    def __init__(self, stack: Stack, link: ClusterLink, faults: Any) -> None:
        self.stack = stack
        self.client = link.client
        self.faults = faults
        #: A key of the faults map in each partition, found once.
        self._keys: dict[int, str] = {}

    @classmethod
    async def on(cls, stack: Stack, link: ClusterLink) -> Stalls:
        return cls(stack, link, await link.get_map(FAULTS_MAP))

    # ---- the partition table, as this client sees it ----------------------------------

    async def partition_of(self, key: Any) -> int:
        return int(await self.client.partition_service.get_partition_id(key))

    def members(self) -> dict[Any, str]:
        """Member uuid → ``host:port`` of every member the cluster lists now."""
        return {
            member.uuid: f"{member.address.host}:{member.address.port}"
            for member in self.client.cluster_service.get_members()
        }

    def owner_of(self, partition: int) -> str | None:
        """``host:port`` of the partition's owner (None: none, or not a member now)."""
        owner = self.client.partition_service.get_partition_owner(partition)
        return self.members().get(owner)

    def member_index(self, address: str) -> int:
        return self.stack.member_addresses(MEMBERS).index(address)

    async def key_in(self, partition: int) -> str:
        """A key of the faults map in ``partition``."""
        if not self._keys:
            count = self.client.partition_service.get_partition_count()
            n = 0
            while len(self._keys) < count:
                key = f"stall-{n}"
                self._keys.setdefault(await self.partition_of(key), key)
                n += 1
        return self._keys[partition]

    async def spread(self, deadline_seconds: float = START_DEADLINE_SECONDS) -> None:
        """Waits until every member owns its share of the partitions (none owning one more
        than another but one): the migrations after a member (re)joined are over, so the
        partition a test holds does not move meanwhile."""

        def even() -> bool:
            count = self.client.partition_service.get_partition_count()
            owned: dict[str | None, int] = dict.fromkeys(self.members().values(), 0)
            for partition in range(count):
                owner = self.owner_of(partition)
                owned[owner] = owned.get(owner, 0) + 1
            return (
                count > 0
                and None not in owned
                and len(owned) == MEMBERS
                and max(owned.values()) - min(owned.values()) <= 1
            )

        await poll(even, deadline_seconds, "the partitions to spread over every member")

    # ---- the hook ----------------------------------------------------------------------

    async def send(self, key: Any, sleep_seconds: float) -> Stall:
        """Puts a stall on ``key``'s partition (``key`` of any map), without awaiting its
        answer (which comes only after the sleep); returns once it is written, so that any
        call this client makes on the partition after it is held (the module's docstring).
        """
        partition = await self.partition_of(key)
        owner = self.owner_of(partition)
        if owner is None:
            raise AssertionError(f"partition {partition} has no owner in the client's table")
        stall_id = secrets.randbits(63) or 1
        processor = FaultStallProcessor(ACTION_STALL, stall_id, round(sleep_seconds * 1000))
        fault_key = await self.key_in(partition)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.faults.execute_on_key(fault_key, processor))
        sent_at = loop.time()
        # One step of the task: the client writes the request before its first await.
        await asyncio.sleep(0)
        return Stall(
            stall_id, partition, owner, self.member_index(owner), sleep_seconds, sent_at, task
        )

    async def ask(self, stall: Stall, member: str) -> int:
        """The state of ``stall`` on ``member`` (asked on a partition it owns)."""
        for partition in range(self.client.partition_service.get_partition_count()):
            if self.owner_of(partition) == member:
                processor = FaultStallProcessor(ACTION_ASK, stall.stall_id, 0)
                answer = await self.faults.execute_on_key(await self.key_in(partition), processor)
                return int(next(iter(answer)))
        raise AssertionError(f"{member} owns no partition in the client's table")

    async def backup_done(self, stall: Stall) -> str | None:
        """The member whose backup of ``stall`` has slept and is done, if any (the owner
        is not asked: it is frozen by then, and never holds its own partition's backup)."""
        others = [m for m in self.members().values() if m != stall.owner]
        states = await asyncio.gather(*(self.ask(stall, member) for member in others))
        done = [m for m, state in zip(others, states, strict=True) if state == STALL_DONE]
        return done[0] if done else None

    # ---- the fault ---------------------------------------------------------------------

    async def fail_over(
        self,
        stall: Stall,
        applied: Callable[[], Awaitable[bool]],
        held: Callable[[], bool],
    ) -> Failover:
        """With ``stall`` in place and the call to hold sent: waits until ``applied()``
        (read on the owner, which still answers), checks that ``held()`` (the call is not
        answered), freezes the owner before the stall can end, waits until the backup
        member's sleep is over (it then applies the held write, the owner still a member),
        and SIGKILLs the owner (the module's docstring says why in this order)."""
        loop = asyncio.get_running_loop()
        name = self.stack.member_name(stall.owner_index)
        freeze_by = stall.ends_no_earlier_than - FREEZE_MARGIN_SECONDS
        await poll_async(
            applied,
            freeze_by - loop.time(),
            f"the call to be applied on its owner {stall.owner} while the stall holds it",
        )
        applied_at = loop.time()
        if not held():
            raise AssertionError(
                "the call was answered while the stall should hold it: the stall was not "
                "in place before the call reached the owner"
            )
        pid = self.stack.pid_of(name)
        assert pid is not None, f"{name} is not running"
        os.killpg(os.getpgid(pid), signal.SIGSTOP)
        frozen_at = loop.time()
        try:
            if frozen_at >= freeze_by:
                raise AssertionError(
                    f"{name} frozen {frozen_at - stall.sent_at:.2f}s after the stall, too late "
                    f"for a stall of {stall.sleep_seconds}s: its answer may have left"
                )
            backup = await poll_async_value(
                lambda: self.backup_done(stall),
                stall.ends_no_earlier_than + BACKUP_DEADLINE_SECONDS - loop.time(),
                f"the backup of partition {stall.partition} to end its sleep",
            )
            done_at = loop.time()
        finally:
            # Killed whatever happened: a member left frozen would hang the next test.
            await asyncio.to_thread(self.stack.kill, name)
        killed_at = loop.time()
        return Failover(
            stall.owner,
            backup,
            applied_at - stall.sent_at,
            frozen_at - stall.sent_at,
            done_at - stall.sent_at,
            killed_at - stall.sent_at,
        )

    async def promoted(self, stall: Stall, failover: Failover) -> None:
        """Waits until the client's table names the backup member as the partition's owner."""
        await poll(
            lambda: self.owner_of(stall.partition) == failover.backup,
            PROMOTION_DEADLINE_SECONDS,
            f"{failover.backup} to own partition {stall.partition}",
            lambda: f" (owner now: {self.owner_of(stall.partition)})",
        )


async def poll(
    condition: Callable[[], bool],
    deadline_seconds: float,
    what: str,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Polls ``condition`` every :data:`POLL_SECONDS` until it holds; fails at the deadline
    naming ``what``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline_seconds:
            raise AssertionError(
                f"timed out after {deadline_seconds:.1f}s waiting for {what}{detail()}"
            )
        await asyncio.sleep(POLL_SECONDS)


async def poll_async(
    condition: Callable[[], Awaitable[bool]], deadline_seconds: float, what: str
) -> None:
    """:func:`poll` of a condition that asks the cluster (each ask bounded by the deadline)."""
    await poll_async_value(lambda: _true_or_none(condition), deadline_seconds, what)


async def _true_or_none(condition: Callable[[], Awaitable[bool]]) -> bool | None:
    return True if await condition() else None


async def poll_async_value(
    value: Callable[[], Awaitable[T | None]], deadline_seconds: float, what: str
) -> T:
    """The first value ``value()`` gives that is not None, asked every :data:`POLL_SECONDS`
    until the deadline (then fails naming ``what``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, deadline_seconds)
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                found = await value()
                if found is not None:
                    return found
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {deadline_seconds:.1f}s waiting for {what}"
        ) from None
