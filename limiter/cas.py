"""Lock-free: read, decide, then write only if nobody wrote in between."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any, Self, Unpack

from limiter.contention import ContendedCause, contended_policy
from limiter.kv_window import KvWindowStrategy, decode_states, encode_value, policy_key
from limiter.policy_rule import PolicyDecision, decide_batch
from limiter.quota import Quota
from limiter.settings import CasConfig, LimiterSettings, StrategyConfig
from limiter.strategy import Elapsed, Wiring

__all__ = ["CasStrategy"]


class CasStrategy(KvWindowStrategy):
    """``get`` → ``put_if_absent(ttl)`` or ``replace_if_same``, retried with jittered
    backoff, once per batch of queued requests.

    Two round trips when uncontended. A lost race costs one more round trip and a short
    random pause (up to ``cas_backoff_max_ms``, doubling per attempt); a failed
    ``put_if_absent`` returns the winner's value, so the next attempt skips the ``get``.
    A batch that runs out of attempts, or of time, is denied as contended: contention is
    never an admission.

    Expiry: after each successful replace the key's TTL is restored off the critical
    path (why: :meth:`limiter.kv_window.KvWindowStrategy._restore_ttl`).
    Clock: this replica's (or the injected one), read at each attempt.
    Storage: :func:`limiter.kv_window.policy_key`, holding
    :func:`limiter.kv_window.encode_value`.
    """

    name = "cas"

    def __init__(
        self, counters: Any, config: StrategyConfig, cas: CasConfig, **wiring: Unpack[Wiring]
    ) -> None:
        super().__init__(counters, config, **wiring)
        self.max_attempts = cas.max_attempts
        self.backoff_max_ms = cas.backoff_max_ms

    @classmethod
    def from_settings(
        cls, counters: Any, settings: LimiterSettings, **wiring: Unpack[Wiring]
    ) -> Self:
        return cls(counters, settings.strategy_config, settings.cas_config, **wiring)

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[PolicyDecision]:
        loop = asyncio.get_running_loop()
        key = policy_key(quota.client_id)
        # The value a lost put_if_absent returned: the next attempt starts from it.
        known: Any = None
        for attempt in range(1, self.max_attempts + 1):
            now = self.now_ms()
            read = known if known is not None else await self.counters.get(key)
            known = None
            states = decode_states(read, quota.policy)
            new_states, decisions = decide_batch(states, now, costs, quota.policy)
            if not any(decision.allowed for decision in decisions):
                self.observer.cas_attempts(attempt)
                return decisions  # nothing admitted: nothing to write
            value = encode_value(str(self.decision_ids.next()), read, quota.policy, new_states)
            written, known = await self._write_if_unchanged(
                key, read, value, self.ttl_ms(decisions[-1])
            )
            if written:
                self.observer.cas_attempts(attempt)
                return decisions
            pause = random.uniform(0, min(self.backoff_max_ms, 2.0 ** (attempt - 1))) / 1000
            if loop.time() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        self.observer.cas_attempts(attempt)
        self.observer.contended(ContendedCause.CAS_EXHAUSTED)
        return [contended_policy(quota.policy)] * len(costs)

    async def _refund(
        self, quota: Quota, cost: int, counted: tuple[int, ...], elapsed: Elapsed, deadline: float
    ) -> bool:
        """Read, give back, write if unchanged, retried with the decisions' backoff until
        the attempts or ``deadline`` run out (then False: nothing written)."""
        loop = asyncio.get_running_loop()
        key = policy_key(quota.client_id)
        known: Any = None
        for attempt in range(1, self.max_attempts + 1):
            read = known if known is not None else await self.counters.get(key)
            value, ttl_ms = self.refunded_value(
                read, quota.policy, cost, counted, elapsed, str(self.refund_ids.next())
            )
            if value is None:
                return True
            written, known = await self._write_if_unchanged(key, read, value, ttl_ms)
            if written:
                return True
            pause = random.uniform(0, min(self.backoff_max_ms, 2.0 ** (attempt - 1))) / 1000
            if loop.time() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        return False
