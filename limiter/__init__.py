"""Fixed-window rate limiting on a Hazelcast cluster, with three interchangeable ways of
making each decision atomic (see :mod:`limiter.lock`, :mod:`limiter.cas` and
:mod:`limiter.entry_processor`), chosen by ``RATELIMIT_STRATEGY``.
"""

from __future__ import annotations

from typing import Any

from limiter.base import Clock, NullObserver, Observer, Strategy, contended, wall_clock_ms
from limiter.cas import CasStrategy
from limiter.cluster import ClusterLink, connect
from limiter.entry_processor import EntryProcessorStrategy
from limiter.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContentionExhausted,
    RateLimitError,
    SettingsError,
)
from limiter.liveness import Liveness
from limiter.lock import LockStrategy
from limiter.rule import (
    Alignment,
    Decision,
    Reason,
    WindowState,
    decide,
    decide_batch,
    opening_start,
    window_start,
)
from limiter.settings import STRATEGY_NAMES, Settings

__all__ = [
    "STRATEGIES",
    "STRATEGY_NAMES",
    "Alignment",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "CasStrategy",
    "Clock",
    "ClusterLink",
    "ContentionExhausted",
    "Decision",
    "EntryProcessorStrategy",
    "Liveness",
    "LockStrategy",
    "NullObserver",
    "Observer",
    "RateLimitError",
    "Reason",
    "Settings",
    "SettingsError",
    "Strategy",
    "WindowState",
    "connect",
    "contended",
    "create_strategy",
    "decide",
    "decide_batch",
    "opening_start",
    "wall_clock_ms",
    "window_start",
]

STRATEGIES: dict[str, type[Strategy]] = {
    LockStrategy.name: LockStrategy,
    CasStrategy.name: CasStrategy,
    EntryProcessorStrategy.name: EntryProcessorStrategy,
}


def create_strategy(
    settings: Settings,
    counters: Any,
    *,
    clock: Clock | None = None,
    observer: Observer | None = None,
    liveness: Liveness | None = None,
    name: str | None = None,
) -> Strategy:
    """The strategy ``settings.strategy`` (or ``name``) names, over the ``counters`` map.

    ``liveness`` (usually :attr:`ClusterLink.liveness`) tells a busy key from an
    unreachable cluster; without it the cluster always counts as reachable.
    """
    chosen = name or settings.strategy
    try:
        cls = STRATEGIES[chosen]
    except KeyError:
        raise SettingsError(
            f"unknown strategy {chosen!r}; choose one of: {', '.join(STRATEGY_NAMES)}"
        ) from None
    common: dict[str, Any] = {
        "clock": clock,
        "observer": observer,
        "decision_timeout_seconds": settings.decision_timeout_seconds,
        "expiry_grace_seconds": settings.expiry_grace_seconds,
        "max_queued_per_key": settings.max_queued_per_key,
        "deny_cache_size": settings.deny_cache_size,
        "liveness": liveness,
    }
    if cls is LockStrategy:
        common.update(
            lock_lease_seconds=settings.lock_lease_seconds,
            lock_wait_seconds=settings.lock_wait_seconds,
        )
    elif cls is CasStrategy:
        common.update(
            cas_max_attempts=settings.cas_max_attempts,
            cas_backoff_max_ms=settings.cas_backoff_max_ms,
        )
    return cls(counters, **common)
