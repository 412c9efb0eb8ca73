"""What a strategy reports beyond its decisions, and the observer that reports nothing.

Why a module of its own: the strategies report through it and the service turns it into
metrics (``api.metrics.MetricsObserver``); neither needs the strategy machinery to do so.
"""

from __future__ import annotations

from typing import Protocol

from limiter.contention import ContendedCause

__all__ = ["REFUND_APPLIED", "REFUND_LOST", "REFUND_OUTCOMES", "NullObserver", "Observer"]

#: The outcomes of a refund that :meth:`Observer.refunded` reports.
REFUND_APPLIED = "applied"
REFUND_LOST = "lost"
REFUND_OUTCOMES = (REFUND_APPLIED, REFUND_LOST)


class Observer(Protocol):
    """What a strategy reports beyond its decision (the API turns it into metrics)."""

    def cas_attempts(self, attempts: int) -> None: ...

    def lock_waited(self, seconds: float) -> None: ...

    def ttl_restore_failed(self) -> None: ...

    def batch_decided(self, size: int) -> None: ...

    def denied_locally(self) -> None: ...

    def contended(self, cause: ContendedCause) -> None: ...

    def refunded(self, outcome: str) -> None:
        """A refund ended: :data:`REFUND_APPLIED` (given back, or nothing to give back),
        or :data:`REFUND_LOST` (not done in time: an under-admission)."""


class NullObserver:
    def cas_attempts(self, attempts: int) -> None:
        pass

    def lock_waited(self, seconds: float) -> None:
        pass

    def ttl_restore_failed(self) -> None:
        pass

    def batch_decided(self, size: int) -> None:
        pass

    def denied_locally(self) -> None:
        pass

    def contended(self, cause: ContendedCause) -> None:
        pass

    def refunded(self, outcome: str) -> None:
        pass
