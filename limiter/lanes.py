"""The lane scheduler: one cluster operation in flight per lane, queued requests decided
together, and every request answered by its deadline.

A lane is what one cluster operation can decide at once: one quota for lock and cas; for
the entry processor, the whole worker when its calls fan out over the shard entries (one
``execute_on_keys`` reaches every entry a batch touches, so one call in flight per worker
is the fewest calls and the fullest; the replicas' CPU goes per call), or one shard entry
when they do not (``RATELIMIT_SHARD_CALLS=per_shard``). The strategy owns one
:class:`Lanes` and gives it the two things that depend on the layout: which lane a quota
is in, and a callable that decides one lane's batch. How one request goes, in a worker
(one event loop)::

    submit(quota, cost, deadline)
      ├─ quota's queue full (max_queued)   → None: the strategy denies it, CONTENDED
      └─ queued on its lane; the lane's runner (one task per busy lane) takes everything
         queued, groups it by quota in arrival order, and decides it with ONE call of
         ``decide``, then takes what queued meanwhile, until the queue is empty

    no answer by the request's deadline (one timer per busy lane, not per request), or
    the call's fate still unknown when it could not be sent again before the deadline (its
    owner died: limiter.call_ids):
      ├─ cluster answered meanwhile (limiter.liveness) → denied, reason CONTENDED
      └─ cluster silent or disconnected                → BackendTimeout (failure mode)

So a flood of N requests on one quota costs about N / batch cluster operations, and the
contention a key sees across the cluster is bounded by the number of workers, not by the
number of requests. A request that timed out after its batch was sent may still have been
counted: that is an under-admission, never an over-admission.

Nothing here knows Hazelcast: ``decide`` is any coroutine function, so the scheduler is
tested alone (tests/unit/test_lanes.py).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Protocol

from limiter.call_ids import resend_after
from limiter.contention import ContendedCause, contended_policy
from limiter.errors import BackendTimeout, as_backend_error
from limiter.liveness import Liveness
from limiter.policy_rule import PolicyDecision
from limiter.quota import Quota

__all__ = [
    "BUSY_LANE",
    "DEADLINE_SLACK_SECONDS",
    "Batches",
    "DecideLane",
    "LaneObserver",
    "LaneQueue",
    "Lanes",
    "Waiter",
]

#: A waiter is answered as late when its deadline is this close (timer granularity).
DEADLINE_SLACK_SECONDS = 0.001
#: Requests that, queued for a lane while its call ran, mark it busy (see Lanes._run).
BUSY_LANE = 2

#: One lane's batch: each quota once, with its requests' costs in arrival order.
Batches = Sequence[tuple[Quota, Sequence[int]]]
#: Decides one lane's batch by a deadline (event-loop time): one list of decisions per
#: quota of the batch, in its order, one decision per cost.
DecideLane = Callable[[Hashable, Batches, float], Awaitable[list[list[PolicyDecision]]]]


class LaneObserver(Protocol):
    """What the scheduler reports (a part of :class:`limiter.strategy.Observer`)."""

    def batch_decided(self, size: int) -> None: ...

    def contended(self, cause: ContendedCause) -> None: ...


def _settle(gathering: asyncio.Future[None]) -> None:
    if not gathering.done():
        gathering.set_result(None)


@dataclasses.dataclass(slots=True)
class Waiter:
    """One request waiting in a lane for its decision."""

    quota: Quota
    cost: int
    answer: asyncio.Future[PolicyDecision]
    deadline: float
    #: When it was asked, on the liveness clock: did the cluster answer anything since?
    asked_at: float


@dataclasses.dataclass(slots=True)
class LaneQueue:
    """One lane's queue, the batch its runner has sent, and one timer for all their
    deadlines (cheaper than a timeout per request on the hottest path)."""

    waiting: collections.deque[Waiter] = dataclasses.field(default_factory=collections.deque)
    #: Requests queued per quota (a lane may carry several quotas' requests).
    queued: dict[Quota, int] = dataclasses.field(default_factory=dict)
    sent: list[Waiter] = dataclasses.field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    #: Set while a busy lane's runner waits for more requests: answered at the limit.
    gathering: asyncio.Future[None] | None = None


class Lanes:
    """Every lane of one strategy in one worker.

    ``decide`` decides one lane's batch and ``lane_of`` names a quota's lane. At most
    ``max_queued`` requests of one quota wait at a time. A busy lane waits up to
    ``batch_window_seconds``, or until ``batch_limit`` requests are queued, before its
    next call. ``liveness`` tells a busy quota from an unreachable cluster; without one
    the cluster always counts as reachable (a late decision is contended).
    """

    def __init__(
        self,
        decide: DecideLane,
        lane_of: Callable[[Quota], Hashable],
        *,
        max_queued: int,
        batch_window_seconds: float,
        batch_limit: int,
        observer: LaneObserver,
        liveness: Liveness | None = None,
    ) -> None:
        self.max_queued = max_queued
        self.batch_window_seconds = batch_window_seconds
        self.batch_limit = batch_limit
        #: The lanes with requests queued or in flight, each while its runner runs.
        self.queues: dict[Hashable, LaneQueue] = {}
        self._decide = decide
        self._lane_of = lane_of
        self._observer = observer
        self._liveness = liveness
        self._now: Callable[[], float] = time.monotonic if liveness is None else liveness.clock
        self._runners: set[asyncio.Task[None]] = set()

    def submit(
        self, quota: Quota, cost: int, deadline: float
    ) -> asyncio.Future[PolicyDecision] | None:
        """Queues one request on its quota's lane; its decision comes by ``deadline``
        (event-loop time) in the future returned.

        None when the quota already has ``max_queued`` requests waiting (reported as
        contended, cause queue_full): the caller denies it at once.
        """
        lane = self._lane_of(quota)
        lane_queue = self.queues.get(lane)
        if lane_queue is None:
            lane_queue = self.queues[lane] = LaneQueue()
        queued = lane_queue.queued.get(quota, 0)
        if queued >= self.max_queued:
            self._observer.contended(ContendedCause.QUEUE_FULL)
            return None
        lane_queue.queued[quota] = queued + 1
        loop = asyncio.get_running_loop()
        waiter = Waiter(quota, cost, loop.create_future(), deadline, self._now())
        lane_queue.waiting.append(waiter)
        if lane_queue.gathering is not None and len(lane_queue.waiting) >= self.batch_limit:
            _settle(lane_queue.gathering)
        if lane_queue.timer is None or deadline < lane_queue.timer.when():
            self._arm(lane_queue, deadline)
        if lane_queue.runner is None:
            lane_queue.runner = loop.create_task(self._run(lane, lane_queue))
            self._runners.add(lane_queue.runner)
            lane_queue.runner.add_done_callback(self._runners.discard)
        return waiter.answer

    async def close(self) -> None:
        """Waits for the lanes' calls still running (each is bounded)."""
        if self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)

    def _arm(self, lane_queue: LaneQueue, when: float) -> None:
        if lane_queue.timer is not None:
            lane_queue.timer.cancel()
        lane_queue.timer = asyncio.get_running_loop().call_at(when, self._expire, lane_queue)

    def _expire(self, lane_queue: LaneQueue) -> None:
        """Answers every waiter of the lane whose deadline has come, and re-arms.

        A waiter still queued is then never counted (the runner skips answered ones);
        one whose batch was sent may have been counted: an under-admission at worst.
        """
        lane_queue.timer = None
        now = asyncio.get_running_loop().time() + DEADLINE_SLACK_SECONDS
        nearest: float | None = None
        for waiter in itertools.chain(lane_queue.sent, lane_queue.waiting):
            if waiter.answer.done():
                continue
            if waiter.deadline <= now:
                self._answer_late(waiter)
            elif nearest is None or waiter.deadline < nearest:
                nearest = waiter.deadline
        if nearest is not None:
            self._arm(lane_queue, nearest)

    def _answer_late(self, waiter: Waiter) -> None:
        """Busy is a denial; only a cluster that answered nothing while the request
        waited (or a lost connection) is unreachable, for the failure mode to decide."""
        if self._liveness is None or self._liveness.reachable_since(waiter.asked_at):
            self._observer.contended(ContendedCause.DEADLINE)
            waiter.answer.set_result(contended_policy(waiter.quota.policy))
            return
        waiter.answer.set_exception(
            BackendTimeout(
                f"no decision by the deadline, and no answer from the cluster for "
                f"{self._liveness.silent_for():.1f}s"
            )
        )

    async def _run(self, lane: Hashable, lane_queue: LaneQueue) -> None:
        """Decides the lane's queue, one call per batch, until it is empty.

        After a call, a queue of at least :data:`BUSY_LANE` requests (they came while it
        ran) marks the lane busy, and the runner gathers more (:meth:`_gather`) first.
        """
        called = False
        try:
            while lane_queue.waiting:
                if called and BUSY_LANE <= len(lane_queue.waiting) < self.batch_limit:
                    await self._gather(lane_queue)
                called = True
                batch = [waiter for waiter in lane_queue.waiting if not waiter.answer.done()]
                lane_queue.waiting.clear()
                lane_queue.queued.clear()
                if batch:
                    await self._send(lane, lane_queue, batch)
        finally:
            for waiter in lane_queue.waiting:
                waiter.answer.cancel()
            lane_queue.waiting.clear()
            lane_queue.queued.clear()
            lane_queue.sent = []
            if lane_queue.timer is not None:
                lane_queue.timer.cancel()
                lane_queue.timer = None
            lane_queue.runner = None
            if self.queues.get(lane) is lane_queue:
                del self.queues[lane]

    async def _send(self, lane: Hashable, lane_queue: LaneQueue, batch: list[Waiter]) -> None:
        """Decides ``batch`` with one call, and answers each of its waiters still waiting:
        with its decision, or with the call's error as a backend error."""
        by_quota: dict[Quota, list[Waiter]] = {}
        for waiter in batch:
            by_quota.setdefault(waiter.quota, []).append(waiter)
        deadline = max(waiter.deadline for waiter in batch)
        lane_queue.sent = batch
        try:
            answers = await self._decide(
                lane,
                [(quota, [w.cost for w in waiting]) for quota, waiting in by_quota.items()],
                deadline,
            )
        except Exception as error:
            if resend_after(error):
                # Maybe applied, maybe not, and no time left to send it again: a dying
                # member, not an unreachable cluster, unless nothing else answered either.
                for waiter in batch:
                    if not waiter.answer.done():
                        self._answer_late(waiter)
                return
            failure = as_backend_error(error)
            for waiter in batch:
                if not waiter.answer.done():
                    waiter.answer.set_exception(failure)
            return
        if self._liveness is not None:
            self._liveness.answered()
        self._observer.batch_decided(len(batch))
        for waiting, decisions in zip(by_quota.values(), answers, strict=True):
            for waiter, decision in zip(waiting, decisions, strict=True):
                if not waiter.answer.done():
                    waiter.answer.set_result(decision)

    async def _gather(self, lane_queue: LaneQueue) -> None:
        """Waits ``batch_window_seconds``, or until the lane holds ``batch_limit`` requests.

        Every call costs both sides about the same whatever it carries (a client message,
        a partition operation, a backup, a response), so under load fewer, fuller calls
        leave more CPU for requests; a wait is at most the window, far below a deadline
        (whose timer still answers a request that runs out meanwhile).
        """
        if self.batch_window_seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        gathering = lane_queue.gathering = loop.create_future()
        timer = loop.call_later(self.batch_window_seconds, _settle, gathering)
        try:
            await gathering
        finally:
            timer.cancel()
            lane_queue.gathering = None
