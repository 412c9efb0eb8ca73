"""Every error the limiter raises, in one tree.

::

    RateLimitError
    ├── SettingsError            bad configuration, raised once at start-up
    └── BackendError             the cluster gave no answer
        ├── BackendUnavailable   not connected, or the cluster refused the operation
        └── BackendTimeout       no decision in time, and the cluster silent meanwhile

Being over the limit is not here: it is a :class:`limiter.rule.Decision` with
``allowed=False``. Nor is a busy key (queue full, lock not free, cas attempts or time
run out while the cluster answers): that is a denial with reason ``CONTENDED``. A
``BackendError`` means "the cluster cannot be reached", which the API turns into fail
open or fail closed as configured.

:func:`as_backend_error` and :func:`cluster_call` are the one place where the cluster
client's errors (and a missed deadline) become these: the strategies' runner, the
guarded route and the management routes all go through them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from hazelcast.errors import HazelcastError

__all__ = [
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "RateLimitError",
    "SettingsError",
    "as_backend_error",
    "cluster_call",
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


def as_backend_error(error: Exception) -> Exception:
    """A cluster client error as the limiter's; anything else (a bug) passes as it is."""
    if isinstance(error, BackendError):
        return error
    if isinstance(error, HazelcastError):
        return BackendUnavailable(f"{type(error).__name__}: {error}")
    return error


@contextlib.asynccontextmanager
async def cluster_call(deadline: float | None = None) -> AsyncIterator[None]:
    """Bounds cluster work by ``deadline`` (event-loop time; None: unbounded) and raises
    only :class:`BackendError` for what the cluster did or did not do."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise BackendTimeout("no answer from the cluster in time") from None
    except HazelcastError as error:
        raise as_backend_error(error) from error
