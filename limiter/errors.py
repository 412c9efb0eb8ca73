"""Every error the limiter raises, in one tree.

::

    RateLimitError
    ├── SettingsError            bad configuration, raised once at start-up
    └── BackendError             the cluster gave no decision
        ├── BackendUnavailable   not connected, or the cluster refused the operation
        ├── BackendTimeout       no answer within the configured decision timeout
        ├── LockNotAcquired      lock strategy: the key's lock was not free in time
        └── ContentionExhausted  cas strategy: out of attempts (policy ``error``)

Being over the limit is not here: it is a :class:`limiter.rule.Decision` with
``allowed=False``. A ``BackendError`` means "no decision", which the API turns into fail
open or fail closed as configured.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ContentionExhausted",
    "LockNotAcquired",
    "RateLimitError",
    "SettingsError",
]


class RateLimitError(Exception):
    """Base of every error raised by this project."""


class SettingsError(RateLimitError):
    """A setting is missing, malformed or out of range; the message names it."""


class BackendError(RateLimitError):
    """No decision could be had from the cluster. ``kind`` labels the metric."""

    kind = "backend"


class BackendUnavailable(BackendError):
    kind = "unavailable"


class BackendTimeout(BackendError):
    kind = "timeout"


class LockNotAcquired(BackendError):
    kind = "lock_timeout"


class ContentionExhausted(BackendError):
    kind = "cas_exhausted"
