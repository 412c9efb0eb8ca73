"""Every error the limiter raises, in one tree.

::

    RateLimitError
    ├── SettingsError            bad configuration, raised once at start-up
    └── BackendError             the cluster gave no answer
        ├── BackendUnavailable   not connected, or the cluster refused the operation
        ├── BackendTimeout       no decision in time, and the cluster silent meanwhile
        └── ContentionExhausted  a registry update lost its compare-and-set races

Being over the limit is not here: it is a :class:`limiter.rule.Decision` with
``allowed=False``. Nor is a busy key (queue full, lock not free, cas attempts or time
run out while the cluster answers): that is a denial with reason ``CONTENDED``. A
``BackendError`` means "the cluster cannot be reached", which the API turns into fail
open or fail closed as configured.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ContentionExhausted",
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


class ContentionExhausted(BackendError):
    kind = "cas_exhausted"
