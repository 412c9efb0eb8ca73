"""The seed's path, repaired: an IMap lock around get-decide-set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar, Unpack

from hazelcast.errors import HazelcastError

from limiter.contention import ContendedCause, contended_policy
from limiter.kv_window import (
    KvWindowStrategy,
    WriteIds,
    Written,
    decode_states,
    encode_value,
    policy_key,
)
from limiter.policy_rule import PolicyDecision, decide_batch
from limiter.quota import Quota
from limiter.settings import LimiterSettings, LockConfig, StrategyConfig
from limiter.strategy import Elapsed, Wiring

__all__ = ["LockStrategy"]

_Result = TypeVar("_Result")


class LockStrategy(KvWindowStrategy):
    """``try_lock(lease)`` → ``get`` → conditional write → ``unlock``: four round trips
    per batch of queued requests, not per request.

    The write is ``put_if_absent(ttl)`` or ``replace_if_same`` of the value read under
    the lock (its TTL restored off the critical path, as in the cas strategy), not a
    plain ``set``: a holder that stalls past its lease cannot overwrite the count of the
    replica that took the lock after it; its batch is denied instead.

    Unlike the original, a lock that is not free in time never yields an unlocked
    decision: the batch is denied as contended. The lock always has a lease, so a replica
    that dies holding it frees it after ``lock_lease_seconds``. The asyncio client owns a
    lock per task: lock and unlock run in the lane's runner task (see
    :mod:`limiter.lanes`), which no caller's timeout or hang-up cancels, so a granted lock
    is always released, and two runners (two workers, or two limits of one client during
    a change) exclude each other like two processes do.
    Clock: this replica's (or the injected one), read once the lock is held, so that a
    wait for the lock never decides with a stale time.
    A fenced write whose answer was lost (the key's owner died after applying it) is
    looked for in the key read again under the lock, and recognised by its id
    (:meth:`_decide_locked`): never counted twice, and not failed open.
    Storage: :func:`limiter.kv_window.policy_key`, holding
    :func:`limiter.kv_window.encode_value`.
    """

    name = "lock"

    def __init__(
        self, counters: Any, config: StrategyConfig, lock: LockConfig, **wiring: Unpack[Wiring]
    ) -> None:
        super().__init__(counters, config, **wiring)
        self.lock_lease_seconds = lock.lease_seconds
        self.lock_wait_seconds = lock.wait_seconds

    @classmethod
    def from_settings(
        cls, counters: Any, settings: LimiterSettings, **wiring: Unpack[Wiring]
    ) -> Self:
        return cls(counters, settings.strategy_config, settings.lock_config, **wiring)

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        key = policy_key(quota.client_id)
        wait = min(self.lock_wait_seconds, deadline - asyncio.get_running_loop().time())
        asked = time.monotonic()
        locked = wait > 0 and await self._lock(key, wait)
        self.observer.lock_waited(time.monotonic() - asked)
        if not locked:
            self.observer.contended(ContendedCause.LOCK_BUSY)
            return [contended_policy(quota.policy)] * len(costs)
        try:
            return await self._decide_locked(key, quota, costs, deadline)
        finally:
            with contextlib.suppress(HazelcastError):
                # Fails when the lease ran out meanwhile: the lock is no longer ours.
                await self._unlock(key)

    async def _decide_locked(
        self, key: str, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        """Under the lock: read, decide, fenced write.

        A write whose answer was lost is looked for in the key read again (still under
        the lock): if the key names it, it was applied and the batch gets the decisions
        it stored, with nothing written again; if the key still holds what the write was
        conditional on, the batch is decided again and written, until ``deadline``
        (then contended); if another holder changed it, the lock was lost. A fenced
        write answered "not written" gets a last read too (a copy the client sent again
        after a member's error is answered so once its first copy was applied): named,
        its decisions; not, the lock was lost (contended).
        """

        def step(read: Any, write_id: str) -> tuple[str | None, int, list[PolicyDecision]]:
            states = decode_states(read, quota.policy)
            new_states, decisions = decide_batch(states, self.now_ms(), costs, quota.policy)
            if not any(decision.allowed for decision in decisions):
                return None, 0, decisions  # nothing admitted: nothing to write
            value = encode_value(write_id, read, quota.policy, new_states)
            return value, self.ttl_ms(decisions[-1]), decisions

        decided = await self._fenced_update(key, deadline, self.decision_ids, step)
        if isinstance(decided, ContendedCause):
            # LOCK_LOST: the key changed under "our" lock: this holder stalled past its
            # lease and another took the lock. Nothing was written, so nothing admitted.
            self.observer.contended(decided)
            return [contended_policy(quota.policy)] * len(costs)
        return decided

    async def _refund(
        self, quota: Quota, cost: int, counted: tuple[int, ...], elapsed: Elapsed, deadline: float
    ) -> bool:
        """Under the lock, as a decision: read, give back, fenced write, and a write whose
        answer was lost looked for as a decision's is (True if the key names it). False
        when the lock is not free by ``deadline`` or was lost meanwhile (nothing written)."""
        key = policy_key(quota.client_id)
        wait = min(self.lock_wait_seconds, deadline - asyncio.get_running_loop().time())
        if not (wait > 0 and await self._lock(key, wait)):
            return False

        def step(read: Any, write_id: str) -> tuple[str | None, int, bool]:
            value, ttl_ms = self.refunded_value(
                read, quota.policy, cost, counted, elapsed, write_id
            )
            return value, ttl_ms, True

        try:
            applied = await self._fenced_update(key, deadline, self.refund_ids, step)
            return applied is True
        finally:
            with contextlib.suppress(HazelcastError):
                await self._unlock(key)

    async def _fenced_update(
        self,
        key: str,
        deadline: float,
        ids: WriteIds,
        step: Callable[[Any, str], tuple[str | None, int, _Result]],
    ) -> _Result | ContendedCause:
        """Under the lock: read, ``step``, fenced write, as :meth:`_decide_locked` says;
        the result of the write that went through or that the key names, or why none did
        (the lock lost, or the deadline). ``step(read, write_id)`` gives the value to write
        with its TTL and the result it stands for; no value: nothing to write, the result
        is the answer."""
        # Each write sent and not answered as written, by id: its result and TTL
        # (KvWindowStrategy._landed says why a read may show it was applied).
        sent: dict[str, tuple[_Result, int]] = {}
        # What the last of them was conditional on.
        before: Any = None
        may_write = True
        while True:
            read = await self.counters.get(key)
            if sent:
                landed = self._landed(key, read, sent)
                if landed is not None:
                    return landed
                if read != before:
                    return ContendedCause.LOCK_LOST  # another holder wrote
                if not may_write:
                    return ContendedCause.DEADLINE
            write_id = ids.next()
            value, ttl_ms, result = step(read, write_id)
            if value is None:
                return result
            written = await self._write(key, read, value, ttl_ms)
            if written is Written.YES:
                return result
            sent[write_id] = (result, ttl_ms)
            before = read
            if written is Written.NO:
                may_write = False  # a last read: a write sent may have landed
                continue
            may_write = await self._pause_to_read_again(deadline)

    async def _write(self, key: str, read: Any, value: str, ttl_ms: int) -> Written:
        """Stores ``value`` only if the key still holds what was read under the lock (a
        fencing write): a holder that stalled past its lease, while another replica took
        the lock and counted on, can never overwrite the newer count."""
        written, _ = await self._write_if_unchanged(key, read, value, ttl_ms)
        return written

    async def _lock(self, key: str, wait: float) -> bool:
        return bool(
            await self.counters.try_lock(key, lease_time=self.lock_lease_seconds, timeout=wait)
        )

    async def _unlock(self, key: str) -> None:
        await self.counters.unlock(key)
