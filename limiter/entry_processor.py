"""One round trip: the rule runs inside the member that owns the client's counter."""

from __future__ import annotations

from collections.abc import Sequence

from hazelcast.serialization.api import (
    IdentifiedDataSerializable,
    ObjectDataInput,
    ObjectDataOutput,
)

from limiter.base import Quota, Strategy
from limiter.rule import Alignment, Decision, Reason, WindowState

__all__ = ["PROCESSOR_FACTORY_ID", "EntryProcessorStrategy", "FixedWindowProcessor"]

#: Must match ProcessorFactory.java and hazelcast.xml.
PROCESSOR_FACTORY_ID = 7301
FIXED_WINDOW_PROCESSOR_ID = 1
#: Sent instead of a time: let the member's clock pick the window.
MEMBER_CLOCK = -1
#: The result is ``[limit, reset_after_ms]`` then ``allowed, remaining, reason`` per request.
RESULT_HEADER = 2
RESULT_STRIDE = 3


class FixedWindowProcessor(IdentifiedDataSerializable):
    """The Python half of ``ratelimit.processor.FixedWindowProcessor``: only its fields.

    It carries a batch: the costs of every request queued for the key, decided in order
    by one execution. The client only ever sends it, so it needs no factory on this side.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: int,
        alignment: Alignment,
        now_ms: int,
        expiry_grace_ms: int,
        costs: Sequence[int],
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.alignment = alignment
        self.now_ms = now_ms
        self.expiry_grace_ms = expiry_grace_ms
        self.costs = list(costs)

    def write_data(self, output: ObjectDataOutput) -> None:
        output.write_long(self.limit)
        output.write_long(self.window_seconds)
        output.write_int(self.alignment.wire_id)
        output.write_long(self.now_ms)
        output.write_long(self.expiry_grace_ms)
        output.write_long_array(self.costs)

    def read_data(self, inp: ObjectDataInput) -> None:
        self.limit = inp.read_long()
        self.window_seconds = inp.read_long()
        self.alignment = list(Alignment)[inp.read_int()]
        self.now_ms = inp.read_long()
        self.expiry_grace_ms = inp.read_long()
        self.costs = inp.read_long_array()

    def get_factory_id(self) -> int:
        return PROCESSOR_FACTORY_ID

    def get_class_id(self) -> int:
        return FIXED_WINDOW_PROCESSOR_ID


def parse_result(result: Sequence[int], requests: int) -> list[Decision]:
    """The member's ``long[]`` answer as one decision per request."""
    if len(result) != RESULT_HEADER + RESULT_STRIDE * requests:
        raise ValueError(f"processor answered {len(result)} values for {requests} requests")
    limit, reset_after_ms = result[0], result[1]
    return [
        Decision(bool(result[i]), limit, result[i + 1], reset_after_ms, Reason(result[i + 2]))
        for i in range(RESULT_HEADER, len(result), RESULT_STRIDE)
    ]


class EntryProcessorStrategy(Strategy):
    """``execute_on_key`` with :class:`FixedWindowProcessor`: one round trip per batch.

    The member runs read-decide-write on the key's partition thread, so no other
    operation on the key interleaves, and writes value and TTL in one step. The key is
    per client and window length (:func:`processor_key`) and its value is
    ``[window start, count]``, because the window is picked on the member. Clock: the owning
    member's, unless a clock was injected (tests), which is then sent with each request.
    """

    name = "entry_processor"

    async def _decide_batch(
        self, quota: Quota, costs: Sequence[int], deadline: float
    ) -> list[Decision]:
        now = MEMBER_CLOCK if self.clock is None else self.clock()
        processor = FixedWindowProcessor(
            quota.limit, quota.window_seconds, quota.alignment, now, self.expiry_grace_ms, costs
        )
        result = await self.counters.execute_on_key(
            processor_key(quota.client_id, quota.window_seconds), processor
        )
        return parse_result(result, len(costs))

    async def stored_window(self, client_id: str, window_seconds: int) -> WindowState | None:
        stored = await self.counters.get(processor_key(client_id, window_seconds))
        if isinstance(stored, list) and len(stored) == 2:
            return WindowState(int(stored[0]), int(stored[1]))
        return None


def processor_key(client_id: str, window_seconds: int) -> str:
    """The entry processor's counter key: one per client and window length, holding
    ``long[]{window_start_ms, count}``."""
    return f"{client_id}:{window_seconds}"
