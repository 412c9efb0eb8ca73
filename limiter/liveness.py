"""Telling a busy key from an unreachable cluster.

A decision that does not come in time has one of two causes, and they call for opposite
answers. When the cluster cannot be reached, the configured failure mode applies (admit,
or 503). When the cluster answers but one client's key is contended, admitting would hand
the flooding client more than its limit, so the request is denied (429 ``contended``).

The test is local and needs no extra round trip at decision time: a request that waited
in vain counts the cluster as reachable when the client is connected and the cluster
answered *some* operation of this worker while the request waited. Every decision's
answer counts; whenever nothing has answered for a quarter of the decision timeout, a
heartbeat asks the cluster for a key. So a healthy cluster answers several times during
any wait as long as the decision timeout, and a silent one (members frozen, a network
cut without a reset) answers nothing: its requests get the failure mode, not a denial.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

__all__ = ["Liveness"]


class Liveness:
    """When this worker last heard from the cluster, and whether it is connected.

    ``clock`` measures it, in seconds (default: the monotonic clock; tests pass one they
    move by hand). A moment given to :meth:`reachable_since` is read from the same clock.
    """

    def __init__(
        self,
        connected: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connected = connected
        self.clock = clock
        self._last_answer = clock()

    def answered(self) -> None:
        """The cluster just answered an operation of this worker."""
        self._last_answer = self.clock()

    def silent_for(self) -> float:
        return self.clock() - self._last_answer

    def reachable_since(self, moment: float) -> bool:
        """Connected, and an answer came at or after ``moment`` (on :attr:`clock`)."""
        return self._connected() and self._last_answer >= moment

    async def heartbeat(
        self, ping: Callable[[], Awaitable[object]], interval: float, ping_timeout: float
    ) -> None:
        """Runs until cancelled: pings whenever nothing answered for ``interval``.

        A ping that fails or outlives ``ping_timeout`` is simply not an answer.
        """
        while True:
            await asyncio.sleep(max(0.0, interval - self.silent_for()))
            if self.silent_for() < interval:
                continue
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ping_timeout):
                    await ping()
                    self.answered()
