"""The one interface every strategy implements, and what they share."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, TypeVar

from hazelcast.errors import HazelcastError

from limiter.errors import BackendError, BackendTimeout, BackendUnavailable
from limiter.rule import Decision

__all__ = ["Clock", "NullObserver", "Observer", "Strategy", "wall_clock_ms"]

#: Returns the current time in epoch milliseconds.
Clock = Callable[[], int]
T = TypeVar("T")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Observer(Protocol):
    """What a strategy reports beyond its decision (the API turns it into metrics)."""

    def cas_attempts(self, attempts: int) -> None: ...

    def lock_waited(self, seconds: float) -> None: ...

    def ttl_restore_failed(self) -> None: ...


class NullObserver:
    def cas_attempts(self, attempts: int) -> None:
        pass

    def lock_waited(self, seconds: float) -> None:
        pass

    def ttl_restore_failed(self) -> None:
        pass


class Strategy(abc.ABC):
    """Makes one fixed-window decision atomic across every replica.

    ``counters`` is the asyncio IMap proxy of the window counters. ``clock`` picks the
    window; the lock and cas strategies always use it (default: this process's wall
    clock), the entry processor uses it only when given and otherwise the clock of the
    member that owns the key.
    """

    name: ClassVar[str]

    def __init__(
        self,
        counters: Any,
        *,
        clock: Clock | None = None,
        decision_timeout_seconds: float = 1.0,
        expiry_grace_seconds: float = 1.0,
        observer: Observer | None = None,
    ) -> None:
        self.counters = counters
        self.clock = clock
        self.decision_timeout_seconds = decision_timeout_seconds
        self.expiry_grace_ms = int(expiry_grace_seconds * 1000)
        self.observer: Observer = observer or NullObserver()

    def now_ms(self) -> int:
        return (self.clock or wall_clock_ms)()

    async def decide(
        self, client_id: str, limit: int, window_seconds: int, cost: int = 1
    ) -> Decision:
        """One decision for ``client_id``, within the decision timeout.

        Raises a :class:`limiter.errors.BackendError` when the cluster gives no answer;
        never waits longer than ``decision_timeout_seconds``.
        """
        if cost < 1 or limit < 1 or window_seconds < 1:
            raise ValueError("cost, limit and window_seconds must be positive")
        return await self._bounded(self._decide(client_id, limit, window_seconds, cost))

    async def _bounded(self, work: Awaitable[T]) -> T:
        # A timeout scope, not wait_for: no extra task per decision on the hot path.
        try:
            async with asyncio.timeout(self.decision_timeout_seconds):
                return await work
        except TimeoutError:
            raise BackendTimeout(f"no decision within {self.decision_timeout_seconds}s") from None
        except BackendError:
            raise
        except HazelcastError as error:
            raise BackendUnavailable(f"{type(error).__name__}: {error}") from error

    @abc.abstractmethod
    async def _decide(self, client_id: str, limit: int, window_seconds: int, cost: int) -> Decision:
        """The strategy's atomic read-decide-write."""

    async def close(self) -> None:  # noqa: B027 - most strategies leave nothing running
        """Waits for work the strategy left running after its decisions."""

    def ttl_ms(self, decision: Decision) -> int:
        """A counter lives until its window ends, plus the grace."""
        return decision.reset_after_ms + self.expiry_grace_ms


def window_key(client_id: str, window_seconds: int, window_start_ms: int) -> str:
    """The counter key of one client's window (lock and cas strategies)."""
    return f"{client_id}:{window_seconds}:{window_start_ms}"
