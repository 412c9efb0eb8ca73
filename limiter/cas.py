"""Lock-free: read, decide, then write only if nobody wrote in between."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar, Unpack

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
from limiter.settings import CasConfig, LimiterSettings, StrategyConfig
from limiter.strategy import Elapsed, Wiring

__all__ = ["CasStrategy"]

_Result = TypeVar("_Result")


class CasStrategy(KvWindowStrategy):
    """``get`` → ``put_if_absent(ttl)`` or ``replace_if_same``, retried with jittered
    backoff, once per batch of queued requests.

    Two round trips when uncontended. A lost race costs one more round trip and a short
    random pause (up to ``cas_backoff_max_ms``, doubling per attempt); a failed
    ``put_if_absent`` returns the winner's value, so the next attempt skips the ``get``.
    A batch that runs out of attempts, or of time, is denied as contended: contention is
    never an admission.

    A write whose answer was lost (the key's owner died after applying it) costs a pause
    of :data:`limiter.call_ids.RESEND_PAUSE_SECONDS` and a read: the key names the write
    if it was applied, and the batch then gets the decisions that write stored, instead
    of being counted twice or failing open; otherwise the batch is decided again from
    the value read, within the same attempts and deadline.

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
        """:meth:`_update` of the quota's key with the batch's decisions; contended when the
        attempts or ``deadline`` run out."""

        def step(read: Any, write_id: str) -> tuple[str | None, int, list[PolicyDecision]]:
            states = decode_states(read, quota.policy)
            new_states, decisions = decide_batch(states, self.now_ms(), costs, quota.policy)
            if not any(decision.allowed for decision in decisions):
                return None, 0, decisions  # nothing admitted: nothing to write
            value = encode_value(write_id, read, quota.policy, new_states)
            return value, self.ttl_ms(decisions[-1]), decisions

        key = policy_key(quota.client_id)
        decided, attempts = await self._update(key, deadline, self.decision_ids, step)
        self.observer.cas_attempts(attempts)
        if decided is not None:
            return decided
        self.observer.contended(ContendedCause.CAS_EXHAUSTED)
        return [contended_policy(quota.policy)] * len(costs)

    async def _refund(
        self, quota: Quota, cost: int, counted: tuple[int, ...], elapsed: Elapsed, deadline: float
    ) -> bool:
        """:meth:`_update` of the quota's key with the request given back; False when the
        attempts or ``deadline`` run out (nothing written), True when it was written, the
        key names it, or the rule had nothing to give back."""

        def step(read: Any, write_id: str) -> tuple[str | None, int, bool]:
            value, ttl_ms = self.refunded_value(
                read, quota.policy, cost, counted, elapsed, write_id
            )
            return value, ttl_ms, True

        applied, _ = await self._update(
            policy_key(quota.client_id), deadline, self.refund_ids, step
        )
        return applied is not None

    async def _update(
        self,
        key: str,
        deadline: float,
        ids: WriteIds,
        step: Callable[[Any, str], tuple[str | None, int, _Result]],
    ) -> tuple[_Result | None, int]:
        """Read, ``step``, write if unchanged, until a write goes through, the attempts or
        ``deadline`` run out (None), or a value read names a write sent and not answered
        as written (its answer lost, or a copy the client sent again answered "not
        written"): that write was applied, and its result is the answer, with nothing
        written again (:meth:`KvWindowStrategy._write_if_unchanged` says why a write the
        key does not name will never be). Returns the result and the attempts made.

        ``step(read, write_id)`` gives the value to write with its TTL, and the result the
        write stands for; no value: nothing to write, the result is the answer.
        """
        loop = asyncio.get_running_loop()
        # The value a lost put_if_absent returned: the next attempt starts from it.
        known: Any = None
        # Each write sent and not answered as written, by id: its result and TTL
        # (KvWindowStrategy._landed says why a read may show it was applied).
        sent: dict[str, tuple[_Result, int]] = {}
        # Whether an answer was lost: then a last read always follows.
        lost = False
        attempt = 0
        may_write = True
        while True:
            read = known if known is not None else await self.counters.get(key)
            known = None
            if sent:
                landed = self._landed(key, read, sent)
                if landed is not None:
                    return landed, attempt
            if not may_write:
                return None, attempt
            attempt += 1
            write_id = ids.next()
            value, ttl_ms, result = step(read, write_id)
            if value is None:
                return result, attempt
            written, known = await self._write_if_unchanged(key, read, value, ttl_ms)
            if written is Written.YES:
                return result, attempt
            sent[write_id] = (result, ttl_ms)
            if written is Written.UNKNOWN:
                # Read the key again (the client sends a get again itself) to learn.
                lost = True
                paused = await self._pause_to_read_again(deadline)
                may_write = paused and attempt < self.max_attempts
                continue
            pause = random.uniform(0, min(self.backoff_max_ms, 2.0 ** (attempt - 1))) / 1000
            if attempt == self.max_attempts or loop.time() + pause >= deadline:
                if not lost and known is None:
                    return None, attempt
                may_write = False
                continue  # a last look: a write not answered as written may have been
            await asyncio.sleep(pause)
