"""The lock and cas strategies' stored value: its writers' ids and its states (the ids
bounded, values written before ids read as before)."""

from __future__ import annotations

from typing import Any

from limiter import (
    Algorithm,
    Limit,
    Policy,
    WindowState,
    window_start,
)
from limiter.kv_window import (
    IDS_END,
    KEPT_WRITERS,
    decode_states,
    encode_states,
    encode_value,
    landed_write,
    write_ids,
)
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
