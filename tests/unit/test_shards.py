"""The entry processor's shard layout, replica side: which entry holds a window, and how
one shard call's answer is split among the keys it carried."""

from __future__ import annotations

import subprocess
import sys

import pytest

from limiter.entry_processor import counter_entry, shard_of, split_result
from limiter.rule import Reason


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


def test_counter_entry_names_the_shard_map_or_the_key_itself() -> None:
    """With shards the window lives in ``{map}.shards`` under its shard's key; with 0
    shards, in the map under its own key."""
    assert counter_entry("m", 0, "c", 60) == ("m", "c:60")
    shard_map, key = counter_entry("m", 4, "c", 60)
    assert shard_map == "m.shards"
    assert key == f"shard-{shard_of('c:60', 4)}-of-4"


def test_a_shard_answer_is_split_in_the_order_of_its_batches() -> None:
    """Each key's part of the answer (limit, reset, then a triple per request) goes to
    that key, in order."""
    answer = [5, 1000, 1, 4, 0, 0, 0, 1, 3, 2000, 1, 2, 0]
    first, second = split_result(answer, [2, 1])
    assert [(d.allowed, d.remaining, d.limit) for d in first] == [(True, 4, 5), (False, 0, 5)]
    assert first[1].reason == Reason.LIMIT_REACHED
    assert [(d.allowed, d.remaining, d.limit, d.reset_after_ms) for d in second] == [
        (True, 2, 3, 2000)
    ]


@pytest.mark.parametrize("sizes", [[2, 2], [1], [2, 1, 1]])
def test_an_answer_of_the_wrong_length_is_refused(sizes: list[int]) -> None:
    """An answer that does not match the batches sent is an error, never a guess."""
    with pytest.raises(ValueError):
        split_result([5, 1000, 1, 4, 0, 0, 0, 1, 3, 2000, 1, 2, 0], sizes)
