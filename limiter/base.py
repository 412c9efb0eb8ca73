"""The one interface every strategy implements, and what they share: one cluster
operation in flight per lane, a local cache of exhausted windows, and the line between a
busy key and an unreachable cluster.

A lane is what one cluster operation can decide at once: one key for lock and cas (and
the entry processor with one entry per key), one shard entry holding many keys' windows
for the entry processor's shard layout. How one request is decided, in a worker (one
event loop)::

    decide(client, limit, window, cost)
      ├─ deny cache: window known to be exhausted → denied here, no cluster call
      ├─ key's queue full (max_queued_per_key)   → denied, reason CONTENDED
      └─ queued on its lane; the lane's runner (one task per busy lane) takes everything
         queued, groups it by key in arrival order, and decides it with ONE cluster
         operation (_decide_lane), then takes what queued meanwhile, until the queue is
         empty

    no answer by the request's deadline (one timer per busy lane, not per request):
      ├─ cluster answered meanwhile (limiter.liveness) → denied, reason CONTENDED
      └─ cluster silent or disconnected                → BackendTimeout (failure mode)

So a flood of N requests on one key costs about N / batch cluster operations, and the
contention a key sees across the cluster is bounded by the number of workers, not by the
number of requests. A request that timed out after its batch was sent may still have been
counted: that is an under-admission, never an over-admission.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import itertools
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypedDict, Unpack

from limiter.contention import ContendedCause, contended
from limiter.deny_cache import DenyCache
from limiter.errors import BackendTimeout, as_backend_error
from limiter.liveness import Liveness
from limiter.rule import Alignment, Decision, Reason, WindowState, open_window
from limiter.settings import LimiterSettings, StrategyConfig, StrategyName

__all__ = [
    "Clock",
    "NullObserver",
    "Observer",
    "Quota",
    "Strategy",
    "Wiring",
    "wall_clock_ms",
]

#: Returns the current time in epoch milliseconds.
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Observer(Protocol):
    """What a strategy reports beyond its decision (the API turns it into metrics)."""

    def cas_attempts(self, attempts: int) -> None: ...

    def lock_waited(self, seconds: float) -> None: ...

    def ttl_restore_failed(self) -> None: ...

    def batch_decided(self, size: int) -> None: ...

    def denied_locally(self) -> None: ...

    def contended(self, cause: ContendedCause) -> None: ...


class NullObserver:
    def cas_attempts(self, attempts: int) -> None:
        pass

    def lock_waited(self, seconds: float) -> None:
        pass

    def ttl_restore_failed(self) -> None:
        pass

    def batch_decided(self, size: int) -> None:
        pass

    def denied_locally(self) -> None:
        pass

    def contended(self, cause: ContendedCause) -> None:
        pass


class Wiring(TypedDict, total=False):
    """What a strategy is connected to, beside its map and its configuration: the clock
    that picks windows (default: this process's), the cluster's liveness (default: always
    reachable) and the observer of its metrics (default: none)."""

    clock: Clock | None
    liveness: Liveness | None
    observer: Observer | None


class Quota(NamedTuple):
    """One client's rule as a request asks for it: the requests that one cluster operation
    can decide together, and the key of the deny cache. A PATCH that changes the limit,
    the window or the alignment starts a new quota (and so never meets a stale denial)."""

    client_id: str
    limit: int
    window_seconds: int
    alignment: Alignment


#: A waiter is answered as late when its deadline is this close (timer granularity).
DEADLINE_SLACK_SECONDS = 0.001
#: Requests that, queued for a lane while its call ran, mark it busy (see Strategy._run).
BUSY_LANE = 2


def _settle(gathering: asyncio.Future[None]) -> None:
    if not gathering.done():
        gathering.set_result(None)


@dataclasses.dataclass(slots=True)
class _Pending:
    quota: Quota
    cost: int
    answer: asyncio.Future[Decision]
    deadline: float
    #: When it was asked, on the liveness clock: did the cluster answer anything since?
    asked_at: float


@dataclasses.dataclass(slots=True)
class _Flight:
    """One lane's queue, the batch its runner has sent, and one timer for all their
    deadlines (cheaper than a timeout per request on the hottest path)."""

    queue: collections.deque[_Pending] = dataclasses.field(default_factory=collections.deque)
    #: Requests queued per key (a lane may carry several keys' requests).
    queued: dict[Quota, int] = dataclasses.field(default_factory=dict)
    sent: list[_Pending] = dataclasses.field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    #: Set while a busy lane's runner waits for more requests: answered at the limit.
    gathering: asyncio.Future[None] | None = None


class Strategy(abc.ABC):
    """Makes fixed-window decisions atomic across every replica.

    ``counters`` is the asyncio IMap proxy of the window counters. ``clock`` picks the
    window; the lock and cas strategies always use it (default: this process's wall
    clock), the entry processor uses it only when given and otherwise the clock of the
    member that owns the key. ``liveness`` tells a busy key from an unreachable cluster;
    without one the cluster always counts as reachable (a late decision is contended).
    """

    name: ClassVar[StrategyName]

    def __init__(self, counters: Any, config: StrategyConfig, **wiring: Unpack[Wiring]) -> None:
        self.counters = counters
        self.clock = wiring.get("clock")
        self.decision_timeout_seconds = config.decision_timeout_seconds
        self.expiry_grace_ms = int(config.expiry_grace_seconds * 1000)
        self.max_queued_per_key = config.max_queued_per_key
        self.batch_window_seconds = config.batch_window_seconds
        self.batch_limit = config.batch_limit
        self.deny_cache = DenyCache(config.deny_cache_size)
        self.liveness = wiring.get("liveness")
        self.observer: Observer = wiring.get("observer") or NullObserver()
        #: The clock a request's ``asked_at`` is read from: the liveness's own.
        self._liveness_clock = time.monotonic if self.liveness is None else self.liveness.clock
        self._flights: dict[Hashable, _Flight] = {}
        self._runners: set[asyncio.Task[None]] = set()
        self._ttl_restores: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls, counters: Any, settings: LimiterSettings, **wiring: Unpack[Wiring]
    ) -> Self:
        """The strategy configured by ``settings`` (a strategy with settings of its own
        adds them here)."""
        return cls(counters, settings.strategy_config, **wiring)

    def now_ms(self) -> int:
        """The time that picks the window (lock and cas)."""
        return (self.clock or wall_clock_ms)()

    def _local_ms(self) -> int:
        """The time the deny cache measures a window's rest with: the injected clock, or
        the monotonic one (steps of the wall clock must not stretch a denial)."""
        return (self.clock or monotonic_ms)()

    async def decide(
        self,
        client_id: str,
        limit: int,
        window_seconds: int,
        cost: int = 1,
        *,
        alignment: Alignment = Alignment.CLOCK,
        deadline: float | None = None,
    ) -> Decision:
        """One decision for ``client_id``, by ``deadline`` (event-loop time; default: the
        decision timeout from now), in windows aligned as ``alignment`` says.

        Over the limit, or too busy to decide in time, is a denial. Raises a
        :class:`limiter.errors.BackendError` only when the cluster cannot be reached.
        """
        if cost < 1 or limit < 1 or window_seconds < 1:
            raise ValueError("cost, limit and window_seconds must be positive")
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.decision_timeout_seconds
        key = Quota(client_id, limit, window_seconds, alignment)
        cached = self.deny_cache.denial(key, cost, self._local_ms())
        if cached is not None:
            self.observer.denied_locally()
            return cached
        lane = self._lane(key)
        flight = self._flights.get(lane)
        if flight is None:
            flight = self._flights[lane] = _Flight()
        queued = flight.queued.get(key, 0)
        if queued >= self.max_queued_per_key:
            self.observer.contended(ContendedCause.QUEUE_FULL)
            return contended(limit)
        flight.queued[key] = queued + 1
        pending = _Pending(key, cost, loop.create_future(), deadline, self._liveness_clock())
        flight.queue.append(pending)
        if flight.gathering is not None and len(flight.queue) >= self.batch_limit:
            _settle(flight.gathering)
        if flight.timer is None or deadline < flight.timer.when():
            self._arm(flight, deadline)
        if flight.runner is None:
            flight.runner = loop.create_task(self._run(lane, flight))
            self._runners.add(flight.runner)
            flight.runner.add_done_callback(self._runners.discard)
        return await pending.answer

    def _lane(self, quota: Quota) -> Hashable:
        """The lane of a key: what one cluster operation decides together with it (the
        key itself unless a layout holds many keys in one entry)."""
        return quota

    def _arm(self, flight: _Flight, when: float) -> None:
        if flight.timer is not None:
            flight.timer.cancel()
        flight.timer = asyncio.get_running_loop().call_at(when, self._expire, flight)

    def _expire(self, flight: _Flight) -> None:
        """Answers every waiter of the lane whose deadline has come, and re-arms.

        A waiter still queued is then never counted (the runner skips answered ones);
        one whose batch was sent may have been counted: an under-admission at worst.
        """
        flight.timer = None
        now = asyncio.get_running_loop().time() + DEADLINE_SLACK_SECONDS
        nearest: float | None = None
        for pending in itertools.chain(flight.sent, flight.queue):
            if pending.answer.done():
                continue
            if pending.deadline <= now:
                self._answer_late(pending)
            elif nearest is None or pending.deadline < nearest:
                nearest = pending.deadline
        if nearest is not None:
            self._arm(flight, nearest)

    def _answer_late(self, pending: _Pending) -> None:
        """Busy is a denial; only a cluster that answered nothing while the request
        waited (or a lost connection) is unreachable, for the failure mode to decide."""
        if self.liveness is None or self.liveness.reachable_since(pending.asked_at):
            self.observer.contended(ContendedCause.DEADLINE)
            pending.answer.set_result(contended(pending.quota.limit))
            return
        pending.answer.set_exception(
            BackendTimeout(
                f"no decision by the deadline, and no answer from the cluster for "
                f"{self.liveness.silent_for():.1f}s"
            )
        )

    async def _run(self, lane: Hashable, flight: _Flight) -> None:
        """Decides the lane's queue, one cluster operation per batch, until it is empty.

        After a call, a queue of at least :data:`BUSY_LANE` requests (they came while it
        ran) marks the lane busy, and the runner gathers more (:meth:`_gather`) first.
        """
        called = False
        try:
            while flight.queue:
                if called and BUSY_LANE <= len(flight.queue) < self.batch_limit:
                    await self._gather(flight)
                called = True
                batch = [pending for pending in flight.queue if not pending.answer.done()]
                flight.queue.clear()
                flight.queued.clear()
                if not batch:
                    continue
                by_key: dict[Quota, list[_Pending]] = {}
                for pending in batch:
                    by_key.setdefault(pending.quota, []).append(pending)
                deadline = max(pending.deadline for pending in batch)
                sent_at = self._local_ms()
                flight.sent = batch
                try:
                    answers = await self._decide_lane(
                        lane,
                        [(quota, [p.cost for p in waiting]) for quota, waiting in by_key.items()],
                        deadline,
                    )
                except Exception as error:
                    failure = as_backend_error(error)
                    for pending in batch:
                        if not pending.answer.done():
                            pending.answer.set_exception(failure)
                    continue
                if self.liveness is not None:
                    self.liveness.answered()
                self.observer.batch_decided(len(batch))
                answered_at = self._local_ms()
                for (quota, waiting), decisions in zip(by_key.items(), answers, strict=True):
                    for pending, decision in zip(waiting, decisions, strict=True):
                        if not pending.answer.done():
                            pending.answer.set_result(decision)
                    last = decisions[-1]
                    if last.remaining == 0 and last.reason != Reason.CONTENDED:
                        self.deny_cache.remember(
                            quota, sent_at + last.reset_after_ms, answered_at + last.reset_after_ms
                        )
        finally:
            for pending in flight.queue:
                pending.answer.cancel()
            flight.queue.clear()
            flight.queued.clear()
            flight.sent = []
            if flight.timer is not None:
                flight.timer.cancel()
                flight.timer = None
            flight.runner = None
            if self._flights.get(lane) is flight:
                del self._flights[lane]

    async def _gather(self, flight: _Flight) -> None:
        """Waits ``batch_window_seconds``, or until the lane holds ``batch_limit`` requests.

        Every call costs both sides about the same whatever it carries (a client message,
        a partition operation, a backup, a response), so under load fewer, fuller calls
        leave more CPU for requests; a wait is at most the window, far below a deadline
        (whose timer still answers a request that runs out meanwhile).
        """
        if self.batch_window_seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        gathering = flight.gathering = loop.create_future()
        timer = loop.call_later(self.batch_window_seconds, _settle, gathering)
        try:
            await gathering
        finally:
            timer.cancel()
            flight.gathering = None

    async def _decide_lane(
        self, lane: Hashable, batches: Sequence[tuple[Quota, Sequence[int]]], deadline: float
    ) -> list[list[Decision]]:
        """Every key batch of ``batches`` (each key once, its requests in arrival order),
        one list of decisions per batch. A lane is one key unless :meth:`_lane` says
        otherwise, so this is one :meth:`_decide_batch`; a layout that holds many keys in
        one entry decides them all in one operation here."""
        return [await self._decide_batch(quota, costs, deadline) for quota, costs in batches]

    @abc.abstractmethod
    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[Decision]:
        """One atomic read-decide-write for every request of ``costs``, in order.

        Returns one decision per cost. A strategy that cannot finish by ``deadline``
        (event-loop time) because the key is busy returns
        :func:`limiter.contention.contended` decisions for the requests it could not
        decide.
        """

    async def current_window(
        self, client_id: str, window_seconds: int, alignment: Alignment
    ) -> WindowState:
        """The window the client's next request would count in, and what it has used: a
        read that changes nothing (the window picked on this strategy's clock)."""
        stored = await self.stored_window(client_id, window_seconds)
        return open_window(stored, self.now_ms(), window_seconds, alignment)

    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        """The window last stored for the client, as this strategy lays it out (None when
        there is none or it expired).

        This is the lock and cas layout (:func:`window_key`); the entry processor has its own.
        """
        return decode_window(await self.counters.get(window_key(client_id, window_seconds)))

    async def close(self) -> None:
        """Waits for the cluster operations still running (each is bounded)."""
        if self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)
        if self._ttl_restores:
            await asyncio.gather(*self._ttl_restores, return_exceptions=True)

    async def _write_if_unchanged(
        self, key: str, read: Any, value: str, ttl_ms: int
    ) -> tuple[bool, Any]:
        """Stores ``value`` only if ``key`` still holds ``read`` (absent when None; any
        value, even one this layout cannot decode, is compared as it was read).

        Returns whether it was written and, when an absent key turned out to be there,
        the value found (saving the next attempt a ``get``).
        """
        if read is None:
            found = await self.counters.put_if_absent(key, value, ttl=ttl_ms / 1000)
            return found is None, found
        if await self.counters.replace_if_same(key, read, value):
            self._restore_ttl(key, ttl_ms)
            return True, None
        return False, None

    def _restore_ttl(self, key: str, ttl_ms: int) -> None:
        """Gives ``key`` its window's TTL again, off the decision's critical path.

        ``replace_if_same`` keeps no per-entry TTL (the entry falls back to the map's
        ``time-to-live-seconds``), and Hazelcast has no replace-with-TTL; the map-level
        TTL in hazelcast.xml bounds a key whose restore was lost.
        """
        task = asyncio.get_running_loop().create_task(self._set_ttl(key, ttl_ms))
        self._ttl_restores.add(task)
        task.add_done_callback(self._ttl_restores.discard)

    async def _set_ttl(self, key: str, ttl_ms: int) -> None:
        try:
            await self.counters.set_ttl(key, ttl_ms / 1000)
        except Exception:
            # The map-level TTL still bounds the key's life; count it, do not fail.
            self.observer.ttl_restore_failed()

    def ttl_ms(self, decision: Decision) -> int:
        """A counter lives until its window ends, plus the grace."""
        return decision.reset_after_ms + self.expiry_grace_ms


def window_key(client_id: str, window_seconds: int) -> str:
    """The counter key of a client's window for the lock and cas strategies: one key per
    client and window length, whatever the alignment, holding :func:`encode_window`.

    Not the entry processor's key (``{id}:{W}``, holding ``long[]``): the layouts differ,
    so a replica started with another strategy never reads a value it cannot compare.
    """
    return f"{client_id}:{window_seconds}:w"


def encode_window(state: WindowState) -> str:
    """``"{window_start_ms}:{count}"``: the client serialises Python ints as 32-bit Java
    ints, which an epoch-millisecond start overflows, and ``replace_if_same`` needs the
    value to compare equal byte for byte; a short string does both."""
    return f"{state.window_start_ms}:{state.count}"


def decode_window(stored: object) -> WindowState | None:
    """The stored window, or None when the key holds nothing this layout wrote."""
    if not isinstance(stored, str):
        return None
    start, _, count = stored.partition(":")
    try:
        return WindowState(int(start), int(count))
    except ValueError:
        return None
