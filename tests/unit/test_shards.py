"""The entry processor's shard layout, replica side: which entry holds a client's states,
and how one shard call's answer is split among the clients it carried."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import hypothesis
import pytest
from hazelcast.config import Config
from hazelcast.serialization.service import SerializationServiceV1
from hypothesis import strategies as st

from limiter import EntryProcessorStrategy, LimiterSettings
from limiter.call_ids import CallId
from limiter.entry_processor import (
    EVERY_SHARD,
    ONE_SHARD,
    counter_entry,
    shard_entry_of,
    shard_of,
)
from limiter.policy import Algorithm, Limit, Policy
from limiter.policy_rule import combine
from limiter.processor_wire import (
    RESULT_STRIDE_PER_LIMIT,
    PinnedKey,
    ShardFanOutProcessor,
    ShardProcessor,
    fan_out_call_data,
    shard_call_data,
    split_result,
)
from limiter.quota import Quota
from limiter.rule import Alignment, Decision, Reason


def test_a_key_has_the_same_shard_in_every_process() -> None:
    """Replicas agree on a key's shard: it does not depend on the process's hash seed."""
    code = "from limiter.entry_processor import shard_of; print(shard_of('client-7:60', 16))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert seen == {str(shard_of("client-7:60", 16))}


def test_keys_spread_over_every_shard() -> None:
    """Many keys use every shard, none more than twice its share."""
    counts = [0] * 8
    for i in range(8000):
        counts[shard_of(f"client-{i}:60", 8)] += 1
    assert min(counts) > 0 and max(counts) < 2000


def test_counter_entry_names_the_shard_map_and_the_shards_key() -> None:
    """A client's states live in ``{map}.shards`` under its shard's key."""
    assert counter_entry("m", 1, "c") == ("m.shards", "shard-0-of-1")
    shard_map, key = counter_entry("m", 4, "c")
    assert shard_map == "m.shards"
    assert key == f"shard-{shard_of('c:p', 4)}-of-4"


ONE = Policy.single(5, 60)
TWO = Policy(
    (
        Limit("burst", Algorithm.FIXED_WINDOW, 3, 1),
        Limit("steady", Algorithm.GCRA, 10, 60),
    )
)
#: Two requests of a one-limit client, then one of a two-limit client: five numbers per
#: limit and request (allowed, remaining, reset, retry or -1, reason).
ANSWER = [1, 4, 1000, -1, 0, 0, 0, 1000, -1, 1, 1, 2, 900, -1, 0, 0, 9, 6000, 5500, 1]


def test_a_shard_answer_is_split_in_the_order_of_its_batches() -> None:
    """Each client's part of the answer goes to that client, request by request, and is
    rebuilt into its whole policy's decision."""
    first, second = split_result(ANSWER, [(Quota("a", ONE), [1, 1]), (Quota("b", TWO), [1])])
    assert [(d.allowed, d.decisions[0].remaining) for d in first] == [(True, 4), (False, 0)]
    assert first[1].reason == Reason.LIMIT_REACHED
    assert first[1].retry_after_ms == 1000
    (denied,) = second
    assert (denied.allowed, denied.denied_by, denied.retry_after_ms) == (False, 1, 5500)
    assert [(d.limit, d.remaining, d.reset_after_ms) for d in denied.decisions] == [
        (3, 2, 900),
        (10, 9, 6000),
    ]


@pytest.mark.parametrize("shape", [[(ONE, 2), (ONE, 1)], [(TWO, 1)], [(ONE, 1), (TWO, 2)]])
def test_an_answer_of_the_wrong_length_is_refused(shape: list[tuple[Policy, int]]) -> None:
    """An answer that does not match the batches sent is an error, never a guess."""
    batches = [(Quota(f"c{i}", policy), [1] * n) for i, (policy, n) in enumerate(shape)]
    with pytest.raises(ValueError):
        split_result(ANSWER, batches)


LIMITS = (
    st.builds(
        Limit,
        name=st.sampled_from(["a", "b", "c", "d"]),
        algorithm=st.just(Algorithm.FIXED_WINDOW),
        limit=st.integers(1, 2**40),
        window_seconds=st.integers(1, 10**7),
        alignment=st.sampled_from(list(Alignment)),
    )
    | st.builds(
        Limit,
        name=st.sampled_from(["e", "f"]),
        algorithm=st.just(Algorithm.SLIDING_WINDOW),
        limit=st.integers(1, 10**6),
        window_seconds=st.integers(1, 10**6),
        shadow=st.booleans(),
    )
    | st.builds(
        Limit,
        name=st.sampled_from(["g", "h"]),
        algorithm=st.just(Algorithm.GCRA),
        limit=st.integers(1, 10**6),
        window_seconds=st.integers(1, 10**6),
        burst=st.integers(0, 1000),
    )
)
POLICIES = (
    st.lists(LIMITS, min_size=1, max_size=8, unique_by=lambda limit: limit.name)
    .filter(lambda limits: any(not limit.shadow for limit in limits))
    .map(Policy)
)
#: Call ids as workers draw them (a worker number below 2**63, a counter from 1).
CALL_IDS = st.builds(CallId, st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1))


def test_a_shard_call_is_serialised_as_the_clients_serializer_does() -> None:
    """The hand-packed shard call has the very bytes the client writes for a
    ShardProcessor, for any clients, policies, costs and clocks."""
    serializer = SerializationServiceV1(Config())

    @hypothesis.given(
        now_ms=st.integers(-1, 2**62),
        grace_ms=st.integers(0, 10**9),
        call_id=CALL_IDS,
        windows=st.lists(
            st.tuples(
                st.text(min_size=1, max_size=40),
                POLICIES,
                st.lists(st.integers(1, 10**6), min_size=1, max_size=5),
            ),
            max_size=6,
        ),
    )
    def same_bytes(now_ms: int, grace_ms: int, call_id: CallId, windows: list[Any]) -> None:
        batches = [(Quota(client, policy), costs) for client, policy, costs in windows]
        expected = serializer.to_data(ShardProcessor(now_ms, grace_ms, call_id, batches))
        packed = shard_call_data(now_ms, grace_ms, call_id, batches)
        assert bytes(packed.buffer) == bytes(expected.buffer)

    same_bytes()


def test_a_fan_out_call_is_serialised_as_the_clients_serializer_does() -> None:
    """The hand-packed fan-out call has the very bytes the client writes for a
    ShardFanOutProcessor, for any shard keys, clients, policies, costs and clocks."""
    serializer = SerializationServiceV1(Config())

    @hypothesis.given(
        now_ms=st.integers(-1, 2**62),
        grace_ms=st.integers(0, 10**9),
        call_id=CALL_IDS,
        shards=st.lists(
            st.tuples(
                st.text(min_size=1, max_size=20),
                st.lists(
                    st.tuples(
                        st.text(min_size=1, max_size=40),
                        POLICIES,
                        st.lists(st.integers(1, 10**6), min_size=1, max_size=3),
                    ),
                    min_size=1,
                    max_size=3,
                ),
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def same_bytes(now_ms: int, grace_ms: int, call_id: CallId, shards: list[Any]) -> None:
        call = [
            (key, [(Quota(client, policy), costs) for client, policy, costs in windows])
            for key, windows in shards
        ]
        expected = serializer.to_data(ShardFanOutProcessor(now_ms, grace_ms, call_id, call))
        packed = fan_out_call_data(now_ms, grace_ms, call_id, call)
        assert bytes(packed.buffer) == bytes(expected.buffer)

    same_bytes()


class CallCountingShards:
    """A shards map that records each call's keys and answers every decision admitted
    with ``remaining`` = the position of its client in the call (to check the routing)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.answers: dict[str, list[int]] = {}

    async def execute_on_key(self, key: Any, processor: Any) -> list[int]:
        self.calls.append(("one", [str(key.buffer[12:], "utf-8")]))
        return self._answer(processor)

    async def execute_on_keys(self, keys: Any, processor: Any) -> list[tuple[str, list[int]]]:
        names = [str(key.buffer[12:], "utf-8") for key in keys]
        self.calls.append(("many", names))
        return [(name, self.answers[name]) for name in reversed(names)]

    def _answer(self, processor: Any) -> list[int]:
        return self.answers["single"]


def test_a_batch_over_several_shards_is_one_call_and_its_answers_go_back_in_order() -> None:
    """With calls fanned out, a worker has one lane; a batch touching three shard entries
    is one execute_on_keys call, and each client gets its own entry's answer, in the
    batch's order whatever order the entries come back in; a batch in one entry is one
    execute_on_key."""
    settings = LimiterSettings(counter_shards=64, shard_calls="fan_out")
    strategy = EntryProcessorStrategy(None, settings.strategy_config)
    shards = strategy._shards = CallCountingShards()
    assert strategy.fan_out
    clients = [f"client-{i}" for i in range(40)]
    by_entry: dict[str, list[str]] = {}
    for client in clients:
        by_entry.setdefault(shard_entry_of(f"{client}:p", 64), []).append(client)
    entries = [entry for entry, members in by_entry.items() if len(members) == 1][:3]
    chosen = [by_entry[entry][0] for entry in entries]
    batches = [(Quota.single(client, 10, 60), [1]) for client in chosen]
    assert {strategy._lane(quota) for quota, _ in batches} == {EVERY_SHARD}

    def answer(remaining: int) -> list[int]:
        return [1, remaining, 60_000, -1, 0]

    shards.answers = {entry: answer(at) for at, entry in enumerate(entries)}
    decided = asyncio.run(strategy._decide_lane(EVERY_SHARD, batches, 0.0))
    assert shards.calls == [("many", entries)]
    assert [d[0].decisions[0].remaining for d in decided] == [0, 1, 2]
    assert len(answer(0)) == RESULT_STRIDE_PER_LIMIT

    shards.answers = {"single": answer(7)}
    alone = asyncio.run(strategy._decide_lane(EVERY_SHARD, batches[:1], 0.0))
    assert shards.calls[-1] == ("one", [entries[0]])
    assert alone[0][0].decisions[0].remaining == 7


def test_per_shard_calls_keep_a_lane_per_shard() -> None:
    """RATELIMIT_SHARD_CALLS=per_shard: each shard entry is a lane of its own, as before."""
    strategy = EntryProcessorStrategy(
        None, LimiterSettings(counter_shards=64, shard_calls="per_shard").strategy_config
    )
    assert not strategy.fan_out
    quota = Quota.single("c", 10, 60)
    assert strategy._lane(quota) == shard_entry_of("c:p", 64)
    one = EntryProcessorStrategy(None, LimiterSettings(counter_shards=1).strategy_config)
    assert not one.fan_out and one._lane(quota) == ONE_SHARD


@pytest.mark.parametrize("name", ["shard-0-of-1", "shard-15-of-16", "schlüssel-ü"])
def test_a_pinned_key_is_the_clients_key_with_its_partition_hash(name: str) -> None:
    """A shard's pinned key serialises and hashes to what the client makes of the name,
    so its call goes to the same partition and entry."""
    expected = SerializationServiceV1(Config()).to_data(name)
    pinned = PinnedKey(name)
    assert bytes(pinned.buffer) == bytes(expected.buffer)
    assert pinned.get_partition_hash() == expected.get_partition_hash()


def test_with_one_shard_every_window_is_in_its_one_entry() -> None:
    """The one-shard lane the strategy names without hashing is the entry every key maps to."""
    assert {shard_entry_of(f"client-{i}:60", 1) for i in range(50)} == {ONE_SHARD}


class ReaderShards:
    """A shards map whose owner answers every window read with ``answer``."""

    def __init__(self, answer: list[int]) -> None:
        self.answer = answer

    async def execute_on_key(self, key: Any, processor: Any) -> list[int]:
        return self.answer


def reading(answer: list[int], clock: Any = None) -> EntryProcessorStrategy:
    strategy = EntryProcessorStrategy(None, LimiterSettings().strategy_config, clock=clock)
    strategy._shards = ReaderShards(answer)
    return strategy


def test_a_peek_picks_the_window_on_the_owners_clock() -> None:
    """The entry processor's peek decides on the clock the owner read with: a window the
    owner still counts in is reported, one that ended on the owner's clock is not; an
    injected clock, which decisions send, takes its place."""
    start = 1_800_000_000_000
    slot = Policy.single(5, 60).limits[0].slot

    def stored(now: int) -> list[int]:
        return [now, start + 120_000, slot, start, 4, 0]

    inside = reading(stored(start + 59_000))
    looked = asyncio.run(inside.peek("c", 5, 60))
    assert (looked.remaining, looked.reset_after_ms) == (1, 1_000)
    ended = reading(stored(start + 60_000))
    assert asyncio.run(ended.peek("c", 5, 60)).remaining == 5
    injected = reading(stored(start + 60_000), clock=lambda: start + 30_000)
    assert asyncio.run(injected.peek("c", 5, 60)).remaining == 1
    none = reading([start + 5], clock=None)
    fresh = asyncio.run(none.peek("c", 5, 60, alignment=Alignment.FIRST_REQUEST))
    assert (fresh.remaining, fresh.reset_after_ms) == (5, 60_000)


def test_an_answer_is_read_as_the_policy_rule_combines_it() -> None:
    """Reading a member's answer gives exactly what the policy rule's combination of its
    per-limit decisions gives, admitted or not, shadow limits included (the reader takes
    a shortcut when every limit admits)."""

    @hypothesis.given(
        policy=POLICIES,
        limits_answers=st.lists(
            st.tuples(
                st.booleans(),
                st.integers(0, 10**6),
                st.integers(0, 10**9),
                st.one_of(st.just(-1), st.integers(0, 10**9)),
                st.sampled_from([Reason.ADMITTED, Reason.LIMIT_REACHED, Reason.COST_OVER_LIMIT]),
            ),
            min_size=8,
            max_size=8,
        ),
    )
    def same(policy: Policy, limits_answers: list[tuple[bool, int, int, int, Reason]]) -> None:
        answers = limits_answers[: len(policy.limits)]
        flat = [n for a in answers for n in (int(a[0]), a[1], a[2], a[3], a[4].value)]
        (read,) = split_result(flat, [(Quota("c", policy), [1])])
        decisions = [
            Decision(a[0], limit.limit, a[1], a[2], a[4], None if a[3] == -1 else a[3])
            for limit, a in zip(policy.limits, answers, strict=True)
        ]
        assert read == [combine(policy, decisions)]

    same()
