"""One round trip: the rule runs inside the member that owns the client's counter."""

from __future__ import annotations

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)

from limiter.base import Strategy
from limiter.rule import Decision, Reason

__all__ = ["PROCESSOR_FACTORY_ID", "EntryProcessorStrategy", "FixedWindowProcessor"]

#: Must match ProcessorFactory.java and hazelcast.xml.
PROCESSOR_FACTORY_ID = 7301
FIXED_WINDOW_PROCESSOR_ID = 1
#: Sent instead of a time: let the member's clock pick the window.
MEMBER_CLOCK = -1


class FixedWindowProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.FixedWindowProcessor``: only its fields.

    The client only ever sends it, so it needs no factory on this side.
    """

    def __init__(
        self, limit: int, window_seconds: int, cost: int, now_ms: int, expiry_grace_ms: int
    ) -> None:
        self.fields = (limit, window_seconds, cost, now_ms, expiry_grace_ms)

    def write_data(self, output: ObjectDataOutput) -> None:
        for value in self.fields:
            output.write_long(value)

    def read_data(self, inp: ObjectDataInput) -> None:
        self.fields = tuple(inp.read_long() for _ in range(5))  # type: ignore[assignment]

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return FIXED_WINDOW_PROCESSOR_ID


class EntryProcessorStrategy(Strategy):
    """``execute_on_key`` with :class:`FixedWindowProcessor`: one round trip.

    The member runs read-decide-write on the key's partition thread, so no other
    operation on the key interleaves, and writes value and TTL in one step. The key is
    per client and window length (``client:W``) and its value is ``[window start, count]``,
    because the window is picked on the member. Clock: the owning member's, unless a clock
    was injected (tests), which is then sent with each request.
    """

    name = "entry_processor"

    async def _decide(self, client_id: str, limit: int, window_seconds: int, cost: int) -> Decision:
        now = MEMBER_CLOCK if self.clock is None else self.clock()
        processor = FixedWindowProcessor(limit, window_seconds, cost, now, self.expiry_grace_ms)
        allowed, limit_, remaining, reset_after_ms, reason = await self.counters.execute_on_key(
            f"{client_id}:{window_seconds}", processor
        )
        return Decision(bool(allowed), limit_, remaining, reset_after_ms, Reason(reason))
