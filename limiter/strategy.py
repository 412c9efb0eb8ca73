"""The one interface every strategy implements, and what every strategy does the same way
around its own atomic step.

A strategy makes one decision of a client's whole policy (every limit, whatever its
algorithm: :mod:`limiter.policy_rule`) atomic across every replica. How it does the
atomic step is its own (a lock, a compare-and-set, an entry processor); the rest is
shared and lives here: the local deny cache of exhausted quotas (:mod:`limiter.deny_cache`)
asked first, then the lanes (:mod:`limiter.lanes`), which queue, batch and time out
requests and call the strategy's :meth:`Strategy._decide_lane` once per batch.

A subclass implements :meth:`Strategy._decide_batch` (one quota's batch in one atomic
step) and :meth:`Strategy.stored_states`; a layout that decides many quotas in one
operation also overrides :meth:`Strategy._lane` and :meth:`Strategy._decide_lane`.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Protocol, Self, TypedDict, Unpack

from limiter import policy_rule
from limiter.contention import ContendedCause, contended_policy
from limiter.deny_cache import DenyCache
from limiter.errors import cluster_call
from limiter.lanes import Batches, Lanes
from limiter.liveness import Liveness
from limiter.policy import Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.quota import Quota
from limiter.rule import Alignment, Decision
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
    """Makes policy decisions atomic across every replica.

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

    async def decide_policy(
        self,
        client_id: str,
        policy: Policy,
        cost: int = 1,
        *,
        deadline: float | None = None,
    ) -> PolicyDecision:
        """One request of ``cost`` against every limit of ``policy``, by ``deadline``
        (event-loop time; default: the decision timeout from now), in one atomic step.

        Over a limit, or too busy to decide in time, is a denial. A cost of 0 is a peek
        (:meth:`peek_policy`). Raises a :class:`limiter.errors.BackendError` only when the
        cluster cannot be reached.
        """
        if cost == 0:
            return await self.peek_policy(client_id, policy, deadline=deadline)
        if cost < 1:
            raise ValueError("cost must not be negative")
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.decision_timeout_seconds
        quota = Quota(client_id, policy)
        cached = self.deny_cache.denial(quota, cost, self._local_ms())
        if cached is not None:
            self.observer.denied_locally()
            return cached
        answer = self.lanes.submit(quota, cost, deadline)
        if answer is None:
            return contended_policy(policy)
        return await answer

    def known_denial(self, client_id: str, policy: Policy, cost: int = 1) -> PolicyDecision | None:
        """The denial of a request this worker already knows, without a cluster call: the
        deny cache's answer for a quota it saw exhausted, or ``None``. A front door that
        decides several quotas for one request (all admitted or none counted) asks this
        first, so that a request one of them denies counts in none of the others."""
        cached = self.deny_cache.denial(Quota(client_id, policy), cost, self._local_ms())
        if cached is not None:
            self.observer.denied_locally()
        return cached

    async def peek_policy(
        self, client_id: str, policy: Policy, *, deadline: float | None = None
    ) -> PolicyDecision:
        """The answer to a request of cost 0 (:func:`limiter.policy_rule.peek`): each
        limit's usage, admitted unless a request of cost 1 would be denied, and nothing
        written.

        The deny cache answers an exhausted quota; otherwise one read of the stored states
        (:meth:`stored_states`, outside the lanes: nothing to make atomic), on the clock
        decisions use: this replica's for lock and cas, the owning member's for the entry
        processor (read with the states). Raises a :class:`limiter.errors.BackendError`
        when the read fails or misses ``deadline`` (default: the decision timeout from now).
        """
        quota = Quota(client_id, policy)
        cached = self.deny_cache.denial(quota, 0, self._local_ms())
        if cached is not None:
            self.observer.denied_locally()
            return cached
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.decision_timeout_seconds
        async with cluster_call(deadline):
            states, now = await self.stored_states(client_id, policy)
        return policy_rule.peek(states, now, policy)

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
        """:meth:`decide_policy` for a client of one fixed-window limit (the single form),
        answered as that limit's decision with the policy's reason."""
        if cost < 1 or limit < 1 or window_seconds < 1:
            raise ValueError("cost, limit and window_seconds must be positive")
        policy = Policy.single(limit, window_seconds, alignment)
        return _single(await self.decide_policy(client_id, policy, cost, deadline=deadline))

    async def peek(
        self,
        client_id: str,
        limit: int,
        window_seconds: int,
        *,
        alignment: Alignment = Alignment.CLOCK,
        deadline: float | None = None,
    ) -> Decision:
        """:meth:`peek_policy` for a client of one fixed-window limit."""
        if limit < 1 or window_seconds < 1:
            raise ValueError("limit and window_seconds must be positive")
        policy = Policy.single(limit, window_seconds, alignment)
        return _single(await self.peek_policy(client_id, policy, deadline=deadline))

    def _lane(self, quota: Quota) -> Hashable:
        """The lane of a quota: what one cluster operation decides together with it (the
        quota itself unless a layout holds many quotas' windows in one entry)."""
        return quota

    async def _decide_and_remember(
        self, lane: Hashable, batches: Batches, deadline: float
    ) -> list[list[PolicyDecision]]:
        """The lanes' call: :meth:`_decide_lane`, then the deny cache remembers each quota
        it left exhausted, until its window ends counted from when the call was sent."""
        sent_at = self._local_ms()
        answers = await self._decide_lane(lane, batches, deadline)
        answered_at = self._local_ms()
        for (quota, _), decisions in zip(batches, answers, strict=True):
            self.deny_cache.remember_decision(quota, decisions[-1], sent_at, answered_at)
        return answers

    async def _decide_lane(
        self, lane: Hashable, batches: Batches, deadline: float
    ) -> list[list[PolicyDecision]]:
        """Every quota batch of ``batches`` (each quota once, its requests in arrival
        order), one list of decisions per batch. A lane is one quota unless :meth:`_lane`
        says otherwise, so this is one :meth:`_decide_batch`; a layout that holds many
        quotas in one entry decides them all in one operation here."""
        return [await self._decide_batch(quota, costs, deadline) for quota, costs in batches]

    @abc.abstractmethod
    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        """One atomic read-decide-write of every limit of the quota's policy for every
        request of ``costs``, in order (:func:`limiter.policy_rule.decide_batch`).

        Returns one decision per cost. A strategy that cannot finish by ``deadline``
        (event-loop time) because the quota is busy returns
        :func:`limiter.contention.contended_policy` decisions for the requests it could
        not decide.
        """

    @abc.abstractmethod
    async def stored_states(
        self, client_id: str, policy: Policy
    ) -> tuple[tuple[LimitState | None, ...], int]:
        """The states last stored for each limit of ``policy`` (None where there is none,
        or it expired), read as this strategy lays them out, and the time in epoch
        milliseconds its next decision would use: :meth:`now_ms` unless the strategy
        decides on another clock."""

    async def close(self) -> None:
        """Waits for the cluster operations still running (each is bounded)."""
        await self.lanes.close()


def _single(answer: PolicyDecision) -> Decision:
    """A one-limit policy's answer as that limit's decision, with the policy's reason
    (contended, or the limit's own)."""
    return answer.decisions[0]._replace(reason=answer.reason)
