"""The entry processor's wire contract, Python side: the constants of
:mod:`limiter.processor_wire`, the rule's numbers and the factory registration in
``hazelcast/hazelcast.xml`` against ``tests/vectors/processor_wire.csv``, the one place
the contract is written (WireContractTest.java checks the Java side against it)."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hazelcast.config import Config
from hazelcast.serialization.service import SerializationServiceV1

from limiter import processor_wire
from limiter.call_ids import CallId
from limiter.gcra import GcraState
from limiter.policy import Algorithm, Limit, Policy
from limiter.processor_wire import (
    ShardFanOutProcessor,
    ShardProcessor,
    ShardRefundProcessor,
    ShardWindowReader,
    parse_states_read,
)
from limiter.quota import Quota
from limiter.rule import Alignment, Reason, WindowState
from limiter.sliding_window import SlidingWindowState
from tests import stall
from tests.vectors.load import load_wire

pytestmark = pytest.mark.unit

HAZELCAST_XML = Path(__file__).parents[2] / "hazelcast" / "hazelcast.xml"
FACTORY_CLASS = "ratelimit.processor.ProcessorFactory"

#: Each number of the contract that Python has, by its name in the contract file.
PYTHON_SIDE = {
    "factory_id": processor_wire.PROCESSOR_FACTORY_ID,
    "shard_processor": processor_wire.SHARD_PROCESSOR_ID,
    "shard_window_reader": processor_wire.SHARD_WINDOW_READER_ID,
    "shard_refund_processor": processor_wire.SHARD_REFUND_PROCESSOR_ID,
    "shard_fan_out_processor": processor_wire.SHARD_FAN_OUT_PROCESSOR_ID,
    "member_clock": processor_wire.MEMBER_CLOCK,
    "result_stride_per_limit": processor_wire.RESULT_STRIDE_PER_LIMIT,
    "no_retry": processor_wire.NO_RETRY,
    "reason_admitted": Reason.ADMITTED.value,
    "reason_limit_reached": Reason.LIMIT_REACHED.value,
    "reason_cost_over_limit": Reason.COST_OVER_LIMIT.value,
    "alignment_clock": Alignment.CLOCK.wire_id,
    "alignment_first_request": Alignment.FIRST_REQUEST.wire_id,
    "algorithm_fixed_window": Algorithm.FIXED_WINDOW.wire_id,
    "algorithm_sliding_window": Algorithm.SLIDING_WINDOW.wire_id,
    "algorithm_gcra": Algorithm.GCRA.wire_id,
    "fault_stall_processor": stall.FAULT_STALL_PROCESSOR_ID,
    "fault_action_stall": stall.ACTION_STALL,
    "fault_action_ask": stall.ACTION_ASK,
    "fault_stall_unknown": stall.STALL_UNKNOWN,
    "fault_stall_sleeping": stall.STALL_SLEEPING,
    "fault_stall_done": stall.STALL_DONE,
}

#: The class ids in use, on either side.
CLASS_IDS = (
    "shard_processor",
    "shard_backup_processor",
    "window_shard",
    "shard_window_reader",
    "shard_refund_processor",
    "shard_fan_out_processor",
    "shard_fan_out_backup_processor",
    "fault_stall_processor",
    "fault_stall_backup_processor",
)


def test_every_shared_number_has_its_python_constant() -> None:
    """The contract's numbers for both sides are exactly those Python checks."""
    shared = {name for name, number in load_wire().items() if number.sides == "both"}
    assert shared == set(PYTHON_SIDE)


@pytest.mark.parametrize("name", sorted(PYTHON_SIDE))
def test_python_constant_matches_the_contract(name: str) -> None:
    """Each Python constant of the wire has the contract's value."""
    assert PYTHON_SIDE[name] == load_wire()[name].value


def test_the_serialisables_carry_the_contracts_ids() -> None:
    """What the client serialises names the contract's factory and class ids."""
    wire = load_wire()
    shard_call = ShardProcessor(0, 0, CallId(1, 1), [(Quota.single("c", 1, 60), [1])])
    reader = ShardWindowReader("c:60")
    refund = ShardRefundProcessor(0, 0, CallId(1, 2), "c:p", Policy.single(1, 60), 1, [0])
    assert shard_call.get_factory_id() == reader.get_factory_id() == wire["factory_id"].value
    assert refund.get_factory_id() == wire["factory_id"].value
    assert shard_call.get_class_id() == wire["shard_processor"].value
    assert reader.get_class_id() == wire["shard_window_reader"].value
    assert refund.get_class_id() == wire["shard_refund_processor"].value
    fan_out = ShardFanOutProcessor(
        0, 0, CallId(1, 3), [("shard-0-of-2", [(Quota.single("c", 1, 60), [1])])]
    )
    assert fan_out.get_factory_id() == wire["factory_id"].value
    assert fan_out.get_class_id() == wire["shard_fan_out_processor"].value
    fault = stall.FaultStallProcessor(stall.ACTION_STALL, 1, 10)
    assert fault.get_factory_id() == wire["factory_id"].value
    assert fault.get_class_id() == wire["fault_stall_processor"].value


def test_the_fault_stall_carries_action_id_and_sleep_in_the_javas_field_order() -> None:
    """FaultStallProcessor serialises as the Java side reads it: the contract's factory and
    class ids, then its action (int), stall id and sleep in ms (longs), big-endian."""
    data = SerializationServiceV1(Config()).to_data(
        stall.FaultStallProcessor(stall.ACTION_ASK, 0x0102030405060708, 3000)
    )
    assert bytes(data.buffer) == struct.pack(
        ">iibiiiqq",
        0,
        processor_wire.IDENTIFIED_TYPE_ID,
        1,
        load_wire()["factory_id"].value,
        load_wire()["fault_stall_processor"].value,
        stall.ACTION_ASK,
        0x0102030405060708,
        3000,
    )


def test_ids_are_distinct_and_retired_ones_unused() -> None:
    """No two class ids are the same, and no constant uses a retired id."""
    wire = load_wire()
    class_ids = [
        number.value
        for name, number in wire.items()
        if name in CLASS_IDS or number.sides == "retired"
    ]
    assert (
        len(class_ids)
        == len(set(class_ids))
        == len(CLASS_IDS) + len([number for number in wire.values() if number.sides == "retired"])
    )
    retired = {number.value for number in wire.values() if number.sides == "retired"}
    assert retired
    assert {
        processor_wire.SHARD_PROCESSOR_ID,
        processor_wire.SHARD_WINDOW_READER_ID,
        processor_wire.SHARD_REFUND_PROCESSOR_ID,
        processor_wire.SHARD_FAN_OUT_PROCESSOR_ID,
    }.isdisjoint(retired)


def test_hazelcast_xml_registers_the_factory_under_the_contracts_id() -> None:
    """The members' configuration registers ProcessorFactory, once, under factory_id."""
    namespace = {"hz": "http://www.hazelcast.com/schema/config"}
    root = ET.parse(HAZELCAST_XML).getroot()
    factories = root.findall(
        "hz:serialization/hz:data-serializable-factories/hz:data-serializable-factory", namespace
    )
    registered = {int(f.attrib["factory-id"]): (f.text or "").strip() for f in factories}
    assert registered.get(load_wire()["factory_id"].value) == FACTORY_CLASS
    assert list(registered.values()).count(FACTORY_CLASS) == 1


def test_the_state_readers_answer_carries_the_owners_clock_and_states_by_slot() -> None:
    """The reader answers [now] or [now, expires_at, slot, a, b, c, ...]: each limit gets
    the state stored under its slot, read as its algorithm's, and None when absent; any
    other length is refused."""
    fixed = Limit("burst", Algorithm.FIXED_WINDOW, 5, 1)
    sliding = Limit("hour", Algorithm.SLIDING_WINDOW, 50, 3600)
    gcra = Limit("steady", Algorithm.GCRA, 10, 60, burst=2)
    policy = Policy((fixed, sliding, gcra))
    assert parse_states_read([99], policy) == ((None, None, None), 99)
    answer = [99, 5000, gcra.slot, 120, 3, 0, fixed.slot, 0, 4, 0, 12345, 1, 1, 1]
    assert parse_states_read(answer, policy) == (
        (WindowState(0, 4), None, GcraState(120, 3)),
        99,
    )
    assert parse_states_read([99, 5000, sliding.slot, 0, 7, 9], policy)[0][1] == (
        SlidingWindowState(0, 7, 9)
    )
    for bad in ([], [1, 2, 3]):
        with pytest.raises(ValueError, match="values"):
            parse_states_read(bad, policy)
