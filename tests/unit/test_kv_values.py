"""The lock and cas strategies' stored value: its writers' ids and its states (the ids
bounded, values written before ids read as before), and what the strategies do with a
write whose answer was lost, over a map in memory (the real cluster:
tests/integration/test_kv_lost_write.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hazelcast.errors import ClientOfflineError, TargetDisconnectedError

from limiter import (
    Algorithm,
    BackendUnavailable,
    CasStrategy,
    Limit,
    LimiterSettings,
    LockStrategy,
    Policy,
    WindowState,
    window_start,
)
from limiter.call_ids import CallIds
from limiter.kv_window import (
    IDS_END,
    KEPT_WRITERS,
    KvWindowStrategy,
    WriteIds,
    decode_states,
    encode_states,
    encode_value,
    landed_write,
    policy_key,
    write_ids,
)
from limiter.policy_rule import decide_batch
from limiter.sliding_window import SlidingWindowState

NOW_MS = 1_800_000_000_000
POLICY = Policy(
    (
        Limit("minute", Algorithm.FIXED_WINDOW, 10, 60),
        Limit("hour", Algorithm.SLIDING_WINDOW, 100, 3600),
    )
)


def states_of(count: int) -> tuple[Any, ...]:
    """A stored minute window of ``count``, and no hour window."""
    return (WindowState(window_start(NOW_MS, 60), count), None)


def test_a_value_round_trips_with_its_write_id() -> None:
    """encode_value then decode_states gives the states back, and write_ids the id."""
    for states in (states_of(3), (None, SlidingWindowState(NOW_MS - 7, 5, 9)), (None, None)):
        value = encode_value("7fa3.1c", None, POLICY, states)
        assert value == "7fa3.1c" + IDS_END + encode_states(POLICY, states)
        assert decode_states(value, POLICY) == states
        assert write_ids(value) == ["7fa3.1c"]


def test_a_writers_ids_are_its_call_ids_text() -> None:
    """WriteIds spells a writer's ids as its CallIds' ids are spelled, one number each."""
    ids, calls = WriteIds(CallIds(worker=0x5EED)), CallIds(worker=0x5EED)
    assert [ids.next() for _ in range(17)] == [str(calls.next()) for _ in range(17)]
    assert ids.prefix == "5eed."
    assert WriteIds().worker != WriteIds().worker


def test_a_value_written_before_ids_reads_as_before() -> None:
    """A value without ids (an older replica's) decodes to its states and names no write;
    the first write over it starts the ids."""
    old = encode_states(POLICY, states_of(4))
    assert IDS_END not in old
    assert decode_states(old, POLICY) == states_of(4)
    assert write_ids(old) == []
    assert write_ids(encode_value("abc.2", old, POLICY, states_of(5))) == ["abc.2"]


def test_values_this_layout_did_not_write_hold_no_state_and_no_id() -> None:
    """Nothing stored, another type, a malformed string, or ids over no states: no state
    and (but for the last) no id."""
    for stored in (None, 7, "", "garbage", "x#garbage"):
        assert decode_states(stored, POLICY) == (None, None)
    for stored in (None, 7, "", "garbage", "#0=1,2,3"):
        assert write_ids(stored) == []
    assert write_ids("abc.1#") == ["abc.1"]
    assert decode_states("abc.1#", POLICY) == (None, None)


def test_the_ids_keep_each_of_the_last_writers_newest_write_newest_first() -> None:
    """Each write puts its id first and keeps one id per other writer, at most
    KEPT_WRITERS in all: a writer writing again replaces its own older id."""
    value: Any = None
    for write_id in ("a.1", "b.1", "c.1", "a.2", "d.1", "d.2"):
        value = encode_value(write_id, value, POLICY, states_of(1))
        assert len(write_ids(value)) <= KEPT_WRITERS
    assert write_ids(value) == ["d.2", "a.2", "c.1"]
    assert KEPT_WRITERS == 3
    # A worker whose hex number is another's prefix is another writer.
    assert write_ids(encode_value("a.3", "ab.1#", POLICY, states_of(1))) == ["a.3", "ab.1"]


def test_a_write_overwritten_by_other_writers_is_still_recognised() -> None:
    """landed_write finds a lost write's id behind up to KEPT_WRITERS - 1 other writers'
    writes, and not once it is pushed out."""
    ours = encode_value("a.7", None, POLICY, states_of(1))
    second = encode_value("b.1", ours, POLICY, states_of(2))
    third = encode_value("c.1", second, POLICY, states_of(3))
    assert landed_write(second, {"a.7": 0}) == "a.7"
    assert landed_write(third, {"a.6": 0, "a.7": 0}) == "a.7"
    assert landed_write(encode_value("d.1", third, POLICY, states_of(4)), {"a.7": 0}) is None
    assert landed_write(ours, {"a.8": 0}) is None
    assert landed_write(None, {"a.7": 0}) is None


class MemoryMap:
    """The counter map's calls the lock and cas strategies make, over a dict: the
    ``fail``-th conditional write applied (or not, ``applied``; or ``late``, just before
    the next write) and then answered with ``error``, as when the key's owner dies
    around it; or, ``resent``, applied and answered as the client's copy sent again
    after a member's error would be ("not written")."""

    def __init__(
        self,
        fail: int = 0,
        applied: bool = True,
        error: Exception | None = None,
        late: bool = False,
        resent: bool = False,
    ):
        self.values: dict[str, Any] = {}
        self.fail = fail
        self.applied = applied and not late
        self.error = error or TargetDisconnectedError("the member left")
        self.writes = 0
        #: The lost write held up, to be applied before the next write.
        self.held: tuple[str, Any, Any] | None = None
        self.late = late
        self.resent = resent

    async def get(self, key: str) -> Any:
        return self.values.get(key)

    async def put_if_absent(self, key: str, value: Any, ttl: float) -> Any:
        self._apply_held()
        # What a copy sent again finds, and what a refused one was refused for.
        return None if self._written(key, None, value) else self.values.get(key)

    async def replace_if_same(self, key: str, old: Any, value: Any) -> bool:
        self._apply_held()
        return self._written(key, old, value)

    def _apply_held(self) -> None:
        if self.held is not None:
            key, old, value = self.held
            if self.values.get(key) == old:
                self.values[key] = value
            self.held = None

    def _written(self, key: str, old: Any, value: Any) -> bool:
        self.writes += 1
        lost = self.writes == self.fail
        if lost and self.late:
            self.held = (key, old, value)
        unchanged = self.values.get(key) == old
        if unchanged and (self.applied or not lost):
            self.values[key] = value
        if lost and self.resent:
            return False
        if lost:
            raise self.error
        return unchanged

    async def set_ttl(self, key: str, ttl: float) -> None:
        pass

    async def try_lock(self, key: str, **waits: float) -> bool:
        return True

    async def unlock(self, key: str) -> None:
        pass


def strategy(kind: str, counters: MemoryMap) -> KvWindowStrategy:
    settings = LimiterSettings()
    if kind == "cas":
        return CasStrategy(counters, settings.strategy_config, settings.cas_config, clock=clock)
    return LockStrategy(counters, settings.strategy_config, settings.lock_config, clock=clock)


def clock() -> int:
    return NOW_MS


def count(counters: MemoryMap, client_id: str = "c") -> int:
    (state, _) = decode_states(counters.values[policy_key(client_id)], POLICY)
    assert isinstance(state, WindowState)
    return state.count


async def decide_three(limiter: KvWindowStrategy) -> list[Any]:
    """One batch of three requests of the client "c"."""
    deadline = asyncio.get_running_loop().time() + 1.0
    batch = await limiter.decide_policies([("c", POLICY, 1)] * 3, deadline=deadline)
    await limiter.close()
    return batch


def first_decisions(before: tuple[Any, ...]) -> list[Any]:
    """The decisions of a batch of three decided over the states ``before``."""
    return decide_batch(before, NOW_MS, [1, 1, 1], POLICY)[1]


@pytest.mark.parametrize("kind", ["cas", "lock"])
@pytest.mark.parametrize("fail", [1, 2], ids=["put_if_absent", "replace_if_same"])
@pytest.mark.parametrize("resent", [False, True], ids=["answer_lost", "sent_again"])
def test_an_applied_write_is_recognised(kind: str, fail: int, resent: bool) -> None:
    """A write applied whose answer is lost, or whose copy sent again by the client is
    answered "not written", gets the decisions it wrote, counted once, and nothing is
    written again."""
    counters = MemoryMap(fail=fail, resent=resent)
    limiter = strategy(kind, counters)

    async def scenario() -> tuple[tuple[Any, ...], list[Any]]:
        if fail == 2:
            assert (await limiter.decide_policy("c", POLICY)).allowed
        before = decode_states(counters.values.get(policy_key("c")), POLICY)
        return before, await decide_three(limiter)

    before, batch = asyncio.run(scenario())
    assert batch == first_decisions(before)
    assert count(counters) == 3 + fail - 1
    assert counters.writes == fail


@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_a_lost_answer_to_a_write_not_applied_decides_again(kind: str) -> None:
    """A write not applied whose answer is lost is decided and written again: the batch
    admitted and counted once."""
    counters = MemoryMap(fail=1, applied=False)
    batch = asyncio.run(decide_three(strategy(kind, counters)))
    assert batch == first_decisions((None, None))
    assert count(counters) == 3
    assert counters.writes == 2


@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_a_lost_write_that_lands_after_the_key_was_read_again_is_recognised(kind: str) -> None:
    """A lost write held up on its member, applied only after the key was read again
    unchanged, makes the next write fail; the read after that recognises it: the batch
    gets its decisions, counted once."""
    counters = MemoryMap(fail=1, late=True)
    batch = asyncio.run(decide_three(strategy(kind, counters)))
    assert batch == first_decisions((None, None))
    assert count(counters) == 3
    assert counters.writes == 2


@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_an_error_after_which_the_cluster_cannot_answer_is_the_failure_mode(kind: str) -> None:
    """A write that fails because the client has no connection is not looked for: the
    batch gets BackendUnavailable, as before."""
    counters = MemoryMap(fail=1, applied=False, error=ClientOfflineError())
    batch = asyncio.run(decide_three(strategy(kind, counters)))
    assert all(isinstance(answer, BackendUnavailable) for answer in batch), batch
    assert counters.writes == 1


@pytest.mark.parametrize("kind", ["cas", "lock"])
def test_a_refund_whose_answer_is_lost_is_applied_once(kind: str) -> None:
    """A refund applied whose answer is lost is reported applied, and given back once."""
    counters = MemoryMap(fail=4)
    limiter = strategy(kind, counters)

    async def scenario() -> bool:
        for _ in range(3):
            assert (await limiter.decide_policy("c", POLICY)).allowed
        applied = await limiter.refund_policy("c", POLICY, 1, (0,), elapsed_ms=0)
        await limiter.close()
        return applied

    assert asyncio.run(scenario())
    assert count(counters) == 2
    assert counters.writes == 4


def test_a_cas_write_lost_on_the_last_attempt_is_still_looked_for() -> None:
    """With one attempt, a lost answer still gets its read: the write applied is
    recognised, not denied as contended."""
    counters = MemoryMap(fail=1)
    settings = LimiterSettings()
    config = type(settings.cas_config)(max_attempts=1, backoff_max_ms=1.0)
    limiter = CasStrategy(counters, settings.strategy_config, config, clock=clock)
    batch = asyncio.run(decide_three(limiter))
    assert batch == first_decisions((None, None))
    assert count(counters) == 3
