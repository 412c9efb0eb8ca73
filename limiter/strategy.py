"""The one interface every strategy implements, and what every strategy does the same way
around its own atomic step.

A strategy makes one fixed-window decision atomic across every replica. How it does the
atomic step is its own (a lock, a compare-and-set, an entry processor); the rest is
shared and lives here: the local deny cache of exhausted quotas (:mod:`limiter.deny_cache`)
asked first, then the lanes (:mod:`limiter.lanes`), which queue, batch and time out
requests and call the strategy's :meth:`Strategy._decide_lane` once per batch.

A subclass implements :meth:`Strategy._decide_batch` (one quota's batch in one atomic
step) and :meth:`Strategy.stored_window`; a layout that decides many quotas in one
operation also overrides :meth:`Strategy._lane` and :meth:`Strategy._decide_lane`.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Protocol, Self, TypedDict, Unpack

from limiter.contention import ContendedCause, contended
from limiter.deny_cache import DenyCache
from limiter.errors import cluster_call
from limiter.lanes import Batches, Lanes
from limiter.liveness import Liveness
from limiter.quota import Quota
from limiter.rule import Alignment, Decision, Reason, WindowState, open_window, peek
from limiter.settings import LimiterSettings, StrategyConfig, StrategyName

__all__ = [
    "Clock",
    "NullObserver",
    "Observer",
    "Strategy",
    "Wiring",
    "monotonic_ms",
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


class Strategy(abc.ABC):
    """Makes fixed-window decisions atomic across every replica.

    ``counters`` is the asyncio IMap proxy of the window counters. ``clock`` picks the
    window; the lock and cas strategies always use it (default: this process's wall
    clock), the entry processor uses it only when given and otherwise the clock of the
    member that owns the key. ``liveness`` tells a busy quota from an unreachable cluster;
    without one the cluster always counts as reachable (a late decision is contended).
    """

    name: ClassVar[StrategyName]

    def __init__(self, counters: Any, config: StrategyConfig, **wiring: Unpack[Wiring]) -> None:
        self.counters = counters
        self.clock = wiring.get("clock")
        self.decision_timeout_seconds = config.decision_timeout_seconds
        self.expiry_grace_ms = int(config.expiry_grace_seconds * 1000)
        self.deny_cache = DenyCache(config.deny_cache_size)
        self.liveness = wiring.get("liveness")
        self.observer: Observer = wiring.get("observer") or NullObserver()
        self.lanes = Lanes(
            self._decide_and_remember,
            self._lane,
            max_queued=config.max_queued_per_key,
            batch_window_seconds=config.batch_window_seconds,
            batch_limit=config.batch_limit,
            observer=self.observer,
            liveness=self.liveness,
        )

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
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.decision_timeout_seconds
        quota = Quota(client_id, limit, window_seconds, alignment)
        cached = self.deny_cache.denial(quota, cost, self._local_ms())
        if cached is not None:
            self.observer.denied_locally()
            return cached
        answer = self.lanes.submit(quota, cost, deadline)
        if answer is None:
            return contended(limit)
        return await answer

    async def peek(
        self,
        client_id: str,
        limit: int,
        window_seconds: int,
        *,
        alignment: Alignment = Alignment.CLOCK,
        deadline: float | None = None,
    ) -> Decision:
        """The decision of a request of cost 0 (:func:`limiter.rule.peek`): the client's
        usage, admitted unless its window is exhausted, and nothing written.

        The deny cache answers an exhausted quota; otherwise one read of the stored window
        (:meth:`read_window`, outside the lanes: nothing to make atomic), the window picked
        on the clock decisions use: this replica's for lock and cas, the owning member's
        for the entry processor (read with the window). Raises a
        :class:`limiter.errors.BackendError` when the read fails or misses ``deadline``
        (default: the decision timeout from now).
        """
        if limit < 1 or window_seconds < 1:
            raise ValueError("limit and window_seconds must be positive")
        quota = Quota(client_id, limit, window_seconds, alignment)
        cached = self.deny_cache.denial(quota, 0, self._local_ms())
        if cached is not None:
            self.observer.denied_locally()
            return cached
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.decision_timeout_seconds
        async with cluster_call(deadline):
            stored, now = await self.read_window(client_id, window_seconds)
        return peek(stored, now, limit, window_seconds, alignment)

    def _lane(self, quota: Quota) -> Hashable:
        """The lane of a quota: what one cluster operation decides together with it (the
        quota itself unless a layout holds many quotas' windows in one entry)."""
        return quota

    async def _decide_and_remember(
        self, lane: Hashable, batches: Batches, deadline: float
    ) -> list[list[Decision]]:
        """The lanes' call: :meth:`_decide_lane`, then the deny cache remembers each quota
        it left exhausted, until its window ends counted from when the call was sent."""
        sent_at = self._local_ms()
        answers = await self._decide_lane(lane, batches, deadline)
        answered_at = self._local_ms()
        for (quota, _), decisions in zip(batches, answers, strict=True):
            last = decisions[-1]
            if last.remaining == 0 and last.reason != Reason.CONTENDED:
                self.deny_cache.remember(
                    quota, sent_at + last.reset_after_ms, answered_at + last.reset_after_ms
                )
        return answers

    async def _decide_lane(
        self, lane: Hashable, batches: Batches, deadline: float
    ) -> list[list[Decision]]:
        """Every quota batch of ``batches`` (each quota once, its requests in arrival
        order), one list of decisions per batch. A lane is one quota unless :meth:`_lane`
        says otherwise, so this is one :meth:`_decide_batch`; a layout that holds many
        quotas in one entry decides them all in one operation here."""
        return [await self._decide_batch(quota, costs, deadline) for quota, costs in batches]

    @abc.abstractmethod
    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[Decision]:
        """One atomic read-decide-write for every request of ``costs``, in order.

        Returns one decision per cost. A strategy that cannot finish by ``deadline``
        (event-loop time) because the quota is busy returns
        :func:`limiter.contention.contended` decisions for the requests it could not
        decide.
        """

    async def read_window(
        self, client_id: str, window_seconds: int
    ) -> tuple[WindowState | None, int]:
        """The window last stored for the client (as :meth:`stored_window`) and the time,
        in epoch milliseconds, that this strategy's next decision would pick the window
        with: :meth:`now_ms` unless the strategy decides on another clock."""
        return await self.stored_window(client_id, window_seconds), self.now_ms()

    async def current_window(
        self, client_id: str, window_seconds: int, alignment: Alignment
    ) -> WindowState:
        """The window the client's next request would count in, and what it has used: a
        read that changes nothing (the window picked on this strategy's clock)."""
        stored = await self.stored_window(client_id, window_seconds)
        return open_window(stored, self.now_ms(), window_seconds, alignment)

    @abc.abstractmethod
    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        """The window last stored for the client, as this strategy lays it out (None when
        there is none or it expired)."""

    async def close(self) -> None:
        """Waits for the cluster operations still running (each is bounded)."""
        await self.lanes.close()
