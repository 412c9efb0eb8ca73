"""Rate limiting on a Hazelcast cluster: each client a policy of up to eight limits (fixed
window, sliding window or GCRA), with three interchangeable ways of making each decision
atomic (see :mod:`limiter.lock`, :mod:`limiter.cas` and
:mod:`limiter.entry_processor`), chosen by ``RATELIMIT_STRATEGY``.
"""

from __future__ import annotations

from typing import Any

from limiter.cas import CasStrategy
from limiter.cluster import ClusterLink, connect
from limiter.contention import ContendedCause, contended, contended_policy
from limiter.entry_processor import EntryProcessorStrategy
from limiter.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    RateLimitError,
    SettingsError,
    as_backend_error,
    cluster_call,
)
from limiter.lanes import Lanes
from limiter.liveness import Liveness
from limiter.lock import LockStrategy
from limiter.policy import Algorithm, Limit, Policy
from limiter.policy_rule import LimitState, PolicyDecision
from limiter.quota import Quota
from limiter.rule import (
    Alignment,
    Decision,
    Reason,
    WindowState,
    decide,
    decide_batch,
    opening_start,
    peek,
    window_start,
)
from limiter.settings import (
    STRATEGY_NAMES,
    CasConfig,
    LimiterSettings,
    LockConfig,
    StrategyConfig,
    StrategyName,
)
from limiter.strategy import (
    REFUND_APPLIED,
    REFUND_LOST,
    REFUND_OUTCOMES,
    Clock,
    NullObserver,
    Observer,
    Strategy,
    wall_clock_ms,
)

__all__ = [
    "REFUND_APPLIED",
    "REFUND_LOST",
    "REFUND_OUTCOMES",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "Algorithm",
    "Alignment",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "CasConfig",
    "CasStrategy",
    "Clock",
    "ClusterLink",
    "ContendedCause",
    "Decision",
    "EntryProcessorStrategy",
    "Lanes",
    "Limit",
    "LimitState",
    "LimiterSettings",
    "Liveness",
    "LockConfig",
    "LockStrategy",
    "NullObserver",
    "Observer",
    "Policy",
    "PolicyDecision",
    "Quota",
    "RateLimitError",
    "Reason",
    "SettingsError",
    "Strategy",
    "StrategyConfig",
    "StrategyName",
    "WindowState",
    "as_backend_error",
    "cluster_call",
    "connect",
    "contended",
    "contended_policy",
    "create_strategy",
    "decide",
    "decide_batch",
    "opening_start",
    "peek",
    "wall_clock_ms",
    "window_start",
]

#: Each strategy by the name ``RATELIMIT_STRATEGY`` gives it.
STRATEGIES: dict[StrategyName, type[Strategy]] = {
    "lock": LockStrategy,
    "cas": CasStrategy,
    "entry_processor": EntryProcessorStrategy,
}


def create_strategy(
    settings: LimiterSettings,
    counters: Any,
    *,
    clock: Clock | None = None,
    observer: Observer | None = None,
    liveness: Liveness | None = None,
    name: StrategyName | None = None,
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
    return cls.from_settings(counters, settings, clock=clock, liveness=liveness, observer=observer)
