"""What the registry reports beyond its answers, as :class:`limiter.Observer` does for the
strategies: the registry calls these methods, and the service turns them into metrics
and log lines (``api.metrics.RegistryMetrics``). The registry itself neither counts nor
logs, so it depends on no metrics library or web framework.
"""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["LogFailure", "NullObserver", "Observer"]


class LogFailure(enum.StrEnum):
    """Why a poll of the change log did not read it to its end."""

    #: The read failed (no member answered, ...): the memo stops being served after a few.
    ERROR = "error"
    #: Entries were gone before they were read (or the log started over): memo emptied.
    GAP = "gap"


class Observer(Protocol):
    """What the registry reports (the API turns it into metrics and its error log)."""

    def record_read(self) -> None:
        """A record was read from the cluster because the worker's memo did not hold it."""

    def log_failed(self, cause: LogFailure) -> None:
        """A poll of the change log failed, or found a gap."""

    def warning(self, message: str) -> None:
        """Something an operator should read (at most one a minute for a failing log)."""


class NullObserver:
    """Reports nothing."""

    def record_read(self) -> None:
        pass

    def log_failed(self, cause: LogFailure) -> None:
        pass

    def warning(self, message: str) -> None:
        pass
