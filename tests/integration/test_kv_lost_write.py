"""The lock and cas strategies on the real cluster when a conditional write is applied
and its answer lost, as when the key's owner dies after applying it (and its backup) and
before answering: the map proxy sends the write to the cluster and then raises
``TargetDisconnectedError`` to the strategy (or sends it again, as the client does after
a member's retryable error, and answers as that copy is). The key, read again, names the
write, so the batch gets the decisions that write stored and is counted once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hazelcast.errors import TargetDisconnectedError

from api.settings import Settings
from limiter import (
    Algorithm,
    CasStrategy,
    Limit,
    LockStrategy,
    Policy,
    PolicyDecision,
    WindowState,
    window_start,
)
from limiter.kv_window import KvWindowStrategy, decode_states, policy_key, write_ids
from limiter.policy_rule import decide_batch
from tests.loop import LoopThread

NOW_MS = 1_800_000_000_000
POLICY = Policy(
    (
        Limit("minute", Algorithm.FIXED_WINDOW, 10, 60),
        Limit("hour", Algorithm.SLIDING_WINDOW, 100, 3600),
    )
)
KEY = policy_key("c")
#: The conditional write whose answer is lost: the first (put_if_absent) or the second.
WRITES = {"put_if_absent": 1, "replace_if_same": 2}


class LostAnswer:
    """The counters map proxy, but for its ``nth`` conditional write: sent to the cluster,
    which applies it, and then answered with ``TargetDisconnectedError``, after
    ``meanwhile`` (another writer) has run; or, with ``resend``, sent to the cluster a
    second time and answered as that copy is, as the client does by itself after a
    member's retryable error."""

    def __init__(
        self,
        proxy: Any,
        nth: int,
        meanwhile: Callable[[], Awaitable[object]] | None = None,
        resend: bool = False,
    ) -> None:
        self.proxy = proxy
        self.nth = nth
        self.meanwhile = meanwhile
        self.resend = resend
        self.writes = 0
        #: Whether the write whose answer was lost was applied by the cluster.
        self.lost_applied: bool | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.proxy, name)

    async def put_if_absent(self, key: str, value: Any, **kwargs: Any) -> Any:
        found = await self.proxy.put_if_absent(key, value, **kwargs)
        if await self._answer_lost(found is None):
            return await self.proxy.put_if_absent(key, value, **kwargs)
        return found

    async def replace_if_same(self, key: str, old: Any, value: Any) -> bool:
        replaced = bool(await self.proxy.replace_if_same(key, old, value))
        if await self._answer_lost(replaced):
            return bool(await self.proxy.replace_if_same(key, old, value))
        return replaced

    async def _answer_lost(self, applied: bool) -> bool:
        """Whether this write's answer is lost (and the write is to be sent again)."""
        self.writes += 1
        if self.writes != self.nth:
            return False
        self.lost_applied = applied
        if self.meanwhile is not None:
            await self.meanwhile()
        if self.resend:
            return True
        raise TargetDisconnectedError("the member holding the key left (injected)")


def build(kind: str, counters: Any, settings: Settings, lease_seconds: float) -> KvWindowStrategy:
    """A strategy on the pinned clock (the lock with a lease of ``lease_seconds``)."""
    config = settings.strategy_config
    if kind == "cas":
        return CasStrategy(counters, config, settings.cas_config, clock=lambda: NOW_MS)
    lock = dataclasses.replace(settings.lock_config, lease_seconds=lease_seconds, wait_seconds=5.0)
    return LockStrategy(counters, config, lock, clock=lambda: NOW_MS)


def minute_count(stored: Any) -> int:
    state = decode_states(stored, POLICY)[0]
    assert isinstance(state, WindowState)
    assert state.window_start_ms == window_start(NOW_MS, 60)
    return state.count


@dataclasses.dataclass
class Outcome:
    #: The states the batch was decided over (after the earlier request, if any).
    before: tuple[Any, ...]
    batch: list[PolicyDecision | Exception]
    other: PolicyDecision | None
    stored: Any
    #: The batch's strategy's and the other writer's worker numbers, as ids begin.
    workers: tuple[str, str | None]


def run_batch(
    kind: str,
    nth: int,
    counters: Any,
    loop: LoopThread,
    settings: Settings,
    other_writer: bool,
    resend: bool = False,
) -> tuple[Outcome, LostAnswer]:
    """One request (for a later write), then a batch of three whose ``nth`` write's answer
    is lost; with ``other_writer``, another replica's strategy (another worker's ids)
    decides one request of the client after that write landed and before its answer."""
    # The lock's other writer takes the lock once this holder's lease ends.
    lease = 1.0 if other_writer else 30.0
    other = build(kind, counters, settings, lease) if other_writer else None
    others: list[PolicyDecision] = []

    async def meanwhile() -> None:
        assert other is not None
        others.append(await other.decide_policy("c", POLICY))

    proxy = LostAnswer(counters, nth, meanwhile if other_writer else None, resend)
    strategy = build(kind, proxy, settings, lease)

    async def scenario() -> Outcome:
        if nth > 1:
            assert (await strategy.decide_policy("c", POLICY)).allowed
        before = decode_states(await counters.get(KEY), POLICY)
        deadline = asyncio.get_running_loop().time() + 10.0
        batch = await strategy.decide_policies([("c", POLICY, 1)] * 3, deadline=deadline)
        for closing in (strategy, other):
            if closing is not None:
                await closing.close()
        return Outcome(
            before,
            list(batch),
            others[0] if others else None,
            await counters.get(KEY),
            (worker(strategy), worker(other) if other is not None else None),
        )

    return loop.run(scenario()), proxy


def worker(strategy: KvWindowStrategy) -> str:
    """How the ids of a strategy's decisions begin."""
    return strategy.decision_ids.prefix


def first_attempt(before: tuple[Any, ...]) -> list[PolicyDecision]:
    """The decisions of the batch's first attempt: three requests over ``before``."""
    return decide_batch(before, NOW_MS, [1, 1, 1], POLICY)[1]


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_an_applied_write_whose_answer_is_lost_is_answered_once(
    kind: str, write: str, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A batch whose write the cluster applied but whose answer was lost gets that first
    attempt's decisions, nothing is written again, and the stored count is exactly what
    was admitted."""
    nth = WRITES[write]
    outcome, proxy = run_batch(kind, nth, counters, loop, base_settings, other_writer=False)
    assert proxy.lost_applied is True
    assert outcome.batch == first_attempt(outcome.before)
    assert all(isinstance(d, PolicyDecision) and d.allowed for d in outcome.batch)
    assert proxy.writes == nth
    assert minute_count(outcome.stored) == nth - 1 + 3


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_a_lost_answer_is_recognised_after_another_writer_changed_the_key(
    kind: str, write: str, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """When another replica wrote the key after the write landed and before the strategy
    read it again, the value still names the write: the batch gets its first attempt's
    decisions and the stored count is exactly what both admitted."""
    nth = WRITES[write]
    outcome, proxy = run_batch(kind, nth, counters, loop, base_settings, other_writer=True)
    assert proxy.lost_applied is True
    assert outcome.other is not None and outcome.other.allowed
    # The other writer's write first, then ours.
    theirs, ours = write_ids(outcome.stored)
    assert theirs.startswith(str(outcome.workers[1])) and ours.startswith(outcome.workers[0])
    assert outcome.batch == first_attempt(outcome.before)
    assert all(isinstance(d, PolicyDecision) and d.allowed for d in outcome.batch)
    assert proxy.writes == nth
    assert minute_count(outcome.stored) == nth - 1 + 3 + 1


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_a_write_the_client_sent_again_after_it_was_applied_is_answered_once(
    kind: str, write: str, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A batch whose write the cluster applied, and whose copy sent again was answered
    "not written", gets that first attempt's decisions, and the stored count is exactly
    what was admitted."""
    nth = WRITES[write]
    outcome, proxy = run_batch(kind, nth, counters, loop, base_settings, False, resend=True)
    assert proxy.lost_applied is True
    assert outcome.batch == first_attempt(outcome.before)
    assert all(isinstance(d, PolicyDecision) and d.allowed for d in outcome.batch)
    assert proxy.writes == nth
    assert minute_count(outcome.stored) == nth - 1 + 3


@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_a_refund_whose_answer_is_lost_is_reported_applied_and_given_back_once(
    kind: str, counters: Any, loop: LoopThread, base_settings: Settings
) -> None:
    """A refund whose write the cluster applied but whose answer was lost is reported
    applied, and gives back exactly one request."""
    proxy = LostAnswer(counters, nth=4)
    strategy = build(kind, proxy, base_settings, 30.0)

    async def scenario() -> tuple[bool, Any]:
        for _ in range(3):
            assert (await strategy.decide_policy("c", POLICY)).allowed
        applied = await strategy.refund_policy("c", POLICY, 1, (0,), elapsed_ms=0)
        await strategy.close()
        return applied, await counters.get(KEY)

    applied, stored = loop.run(scenario())
    assert proxy.lost_applied is True
    assert applied
    assert proxy.writes == 4
    assert minute_count(stored) == 2
