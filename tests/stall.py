"""A member-side fault hook for the tests: the Python half of its wire format.

The hook (``hazelcast/src/main/java/ratelimit/fault``) runs only on members started with
``-Dratelimit.faults=on`` (:data:`FAULTS_ON`); any other member refuses it with an error
naming the property.
"""

from __future__ import annotations

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)

from limiter.processor_wire import PROCESSOR_FACTORY_ID

#: The member JVM option that turns the fault hooks on (off otherwise).
FAULTS_PROPERTY = "ratelimit.faults"
FAULTS_ON = (f"-D{FAULTS_PROPERTY}=on",)
#: The map the stalls write their markers to (the members' default map configuration:
#: one synchronous backup).
FAULTS_MAP = "ratelimit.faults"

#: The contract's numbers (tests/vectors/processor_wire.csv).
FAULT_STALL_PROCESSOR_ID = 20
ACTION_STALL = 1
ACTION_ASK = 2
STALL_UNKNOWN = 0
STALL_SLEEPING = 1
STALL_DONE = 2


class FaultStallProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.fault.FaultStallProcessor``: ``ACTION_STALL`` writes
    the marker ``stall_id`` and sleeps ``sleep_ms`` on the partition's backup member;
    ``ACTION_ASK`` answers ``[state]`` of stall ``stall_id`` on the member that owns the
    key it is sent to (``STALL_UNKNOWN``, ``STALL_SLEEPING``, ``STALL_DONE``)."""

    def __init__(self, action: int, stall_id: int, sleep_ms: int) -> None:
        self.action = action
        self.stall_id = stall_id
        self.sleep_ms = sleep_ms

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_int(self.action)
        output.write_long(self.stall_id)
        output.write_long(self.sleep_ms)

    def read_data(self, inp: ObjectDataInput) -> None:
        raise NotImplementedError("only ever sent to a member")

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return FAULT_STALL_PROCESSOR_ID
