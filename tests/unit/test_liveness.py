"""Busy versus unreachable: when the worker last heard from the cluster, on a clock the
test moves by hand (no sleeping to let time pass)."""

from __future__ import annotations

import asyncio

from limiter import Liveness


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reachable_needs_a_connection_and_an_answer_since_the_moment() -> None:
    """Reachable since a moment: connected, and an answer at or after that moment."""
    connected = True
    clock = FakeClock()
    liveness = Liveness(connected=lambda: connected, clock=clock)
    clock.now += 5
    before = clock()
    liveness.answered()
    assert liveness.reachable_since(before)
    assert not liveness.reachable_since(before + 1)
    assert liveness.silent_for() == 0
    clock.now += 3
    assert liveness.silent_for() == 3
    connected = False
    assert not liveness.reachable_since(before)


def test_the_heartbeat_keeps_an_idle_cluster_reachable() -> None:
    """With no decisions, a heartbeat ping that answers keeps the cluster counted
    reachable, and one that hangs (past its timeout, then tried again) does not."""

    async def scenario(ping_hangs: bool) -> bool:
        clock = FakeClock()
        liveness = Liveness(clock=clock)
        clock.now += 1.0  # silent for the whole interval: the heartbeat pings at once
        since = clock()
        pings = 0
        #: Answered: set once the first ping is done. Hanging: set by a second ping, which
        #: shows the first was given up on (without counting as an answer).
        seen = asyncio.Event()

        async def ping() -> None:
            nonlocal pings
            pings += 1
            if not ping_hangs:
                seen.set()
                return
            if pings >= 2:
                seen.set()
            await asyncio.Event().wait()

        beating = asyncio.create_task(liveness.heartbeat(ping, 1.0, 0.01))
        try:
            await asyncio.wait_for(seen.wait(), 2.0)
            await asyncio.sleep(0)  # the heartbeat's step after the ping has run
        finally:
            beating.cancel()
        return liveness.reachable_since(since)

    assert asyncio.run(scenario(ping_hangs=False))
    assert not asyncio.run(scenario(ping_hangs=True))
