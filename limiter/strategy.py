"""The one interface every strategy implements, and what every strategy does the same way
around its own atomic step.

A strategy makes one decision of a client's whole policy (every limit, whatever its
algorithm: :mod:`limiter.policy_rule`) atomic across every replica. How it does the
atomic step is its own (a lock, a compare-and-set, an entry processor); the rest is
shared and lives here: the local deny cache of exhausted quotas (:mod:`limiter.deny_cache`)
asked first, then the lanes (:mod:`limiter.lanes`), which queue, batch and time out
requests and call the strategy's :meth:`Strategy._decide_lane` once per batch.

A subclass implements :meth:`Strategy._decide_batch` (one quota's batch in one atomic
step), :meth:`Strategy.stored_states` and :meth:`Strategy._refund` (giving back one
admission in one atomic step, :meth:`Strategy.refund_policy`); a layout that decides many
quotas in one operation also overrides :meth:`Strategy._lane` and
:meth:`Strategy._decide_lane`.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Self, TypedDict, Unpack

from limiter import policy_rule
from limiter.contention import contended_policy
from limiter.deny_cache import DenyCache
from limiter.errors import BackendError, cluster_call
from limiter.lanes import Batches, Lanes
from limiter.liveness import Liveness
from limiter.observer import (
    REFUND_APPLIED,
    REFUND_LOST,
    REFUND_OUTCOMES,
    NullObserver,
    Observer,
)
from limiter.policy import Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.quota import Quota
from limiter.rule import Alignment, Decision
from limiter.settings import LimiterSettings, StrategyConfig, StrategyName

__all__ = [
    "REFUND_APPLIED",
    "REFUND_LOST",
    "REFUND_OUTCOMES",
    "Clock",
    "Elapsed",
    "NullObserver",
    "Observer",
    "Strategy",
    "Wiring",
    "monotonic_ms",
    "wall_clock_ms",
]

#: Returns the current time in epoch milliseconds.
Clock = Callable[[], int]
#: Returns the milliseconds elapsed since the caller sent the decision a refund gives back,
#: up to the instant it is called (so a refund that waited counts its wait too).
Elapsed = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


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
        self._refunds: set[asyncio.Task[bool]] = set()

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
        answer = self._submit(client_id, policy, cost, deadline)
        return answer if isinstance(answer, PolicyDecision) else await answer

    async def decide_policies(
        self, requests: Sequence[tuple[str, Policy, int]], *, deadline: float
    ) -> list[PolicyDecision | BackendError]:
        """Several quotas' requests ``(client_id, policy, cost)``, each decided on its own
        as :meth:`decide_policy` does, all queued before any is awaited, so that those
        whose windows share a lane go to the cluster in one call. A request the cluster
        could not decide gets its error in its place (the others keep their decisions)."""
        if any(cost < 1 for _, _, cost in requests):
            raise ValueError("cost must be positive")
        pending = [self._submit(*request, deadline) for request in requests]
        decided: list[PolicyDecision | BackendError] = []
        for item in pending:
            if isinstance(item, PolicyDecision):
                decided.append(item)
                continue
            try:
                decided.append(await item)
            except BackendError as error:
                decided.append(error)
        return decided

    def _submit(
        self, client_id: str, policy: Policy, cost: int, deadline: float
    ) -> PolicyDecision | asyncio.Future[PolicyDecision]:
        """A request of ``cost`` (1 or more) answered at once (a known denial, or a full
        queue: contended) or queued on its lane, its decision to come in the future."""
        cached = self.known_denial(client_id, policy, cost)
        if cached is not None:
            return cached
        answer = self.lanes.submit(Quota(client_id, policy), cost, deadline)
        return contended_policy(policy) if answer is None else answer

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

    async def refund_policy(
        self,
        client_id: str,
        policy: Policy,
        cost: int,
        counted: Sequence[int],
        *,
        elapsed_ms: int,
        deadline: float | None = None,
    ) -> bool:
        """Gives back a request of ``cost`` that ``policy``'s limits ``counted`` admitted
        (:func:`limiter.refund.counted` of its answer), in one atomic step of its own:
        :func:`limiter.refund.refund` on the clock decisions use, with ``sent_ms`` that
        clock's now less ``elapsed_ms`` (the time since the caller sent the decision, on
        its monotonic clock) and less the time this call waited before the step (on
        :meth:`_local_ms`, so an injected clock measures it too).

        Why: a request counted under several keys (one per descriptor) is given back by
        the keys that admitted it when another denied it. True when it was applied (or the
        rule had nothing to give back); False when it could not be done by ``deadline``
        (the key busy, the cluster failing): the request then stays counted, an
        under-admission, never an error raised to the caller. The step goes on after a
        False answer (it is never cut half-way, and is safe whenever it lands). The deny
        cache bypassed: it forgets the quota, since a refund can reopen a window.
        """
        if cost < 0 or elapsed_ms < 0:
            raise ValueError("cost and elapsed_ms must not be negative")
        indices = tuple(sorted(set(counted)))
        if any(not 0 <= i < len(policy.limits) for i in indices):
            raise ValueError(f"counted limits {indices} outside a policy of {len(policy)}")
        if cost == 0 or not indices:
            self.observer.refunded(REFUND_APPLIED)
            return True
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.decision_timeout_seconds
        called = self._local_ms()

        def elapsed() -> int:
            return elapsed_ms + max(0, self._local_ms() - called)

        quota = Quota(client_id, policy)
        step = loop.create_task(self._refund(quota, cost, indices, elapsed, deadline))
        self._refunds.add(step)
        step.add_done_callback(_settle_refund)
        step.add_done_callback(self._refunds.discard)
        try:
            async with cluster_call(deadline):
                applied = await asyncio.shield(step)
        except BackendError:
            applied = False
        self.deny_cache.forget(quota)
        self.observer.refunded(REFUND_APPLIED if applied else REFUND_LOST)
        return applied

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

    async def _refund(
        self, quota: Quota, cost: int, counted: tuple[int, ...], elapsed: Elapsed, deadline: float
    ) -> bool:
        """One atomic read-refund-write of the quota's states
        (:func:`limiter.refund.refund` with ``sent_ms = now - elapsed()``, ``now`` read
        in the step); False when the key stayed busy until ``deadline``. A strategy that
        keeps states implements it."""
        raise NotImplementedError(f"{self.name} cannot give back an admission")

    async def close(self) -> None:
        """Waits for the cluster operations still running (each is bounded)."""
        await self.lanes.close()
        if self._refunds:
            await asyncio.gather(*self._refunds, return_exceptions=True)


def _settle_refund(step: asyncio.Task[bool]) -> None:
    """Takes a refund step's error, so one that ended after its caller gave up (lost, and
    counted so) is not reported as never retrieved."""
    if not step.cancelled():
        step.exception()


def _single(answer: PolicyDecision) -> Decision:
    """A one-limit policy's answer as that limit's decision, with the policy's reason
    (contended, or the limit's own)."""
    return answer.decisions[0]._replace(reason=answer.reason)
