"""What the registry is built from: the maps' names and the memo's bounds.

The values come from the service's settings (``RATELIMIT_CLIENTS_MAP``,
``RATELIMIT_REGISTRY_MEMO_SECONDS``, ...; ``api.settings.Settings.registry_config``),
where every default lives, as the strategies take :class:`limiter.StrategyConfig`:
this class has no defaults of its own, so a value can only come from there.
"""

from __future__ import annotations

import dataclasses

__all__ = ["RegistryConfig"]


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    """The registry's maps and how each worker keeps their records."""

    #: The map of records (id → JSON); its change log is named after it.
    clients_map: str
    #: The map of names (name → id).
    names_map: str
    #: Upper bound on how stale a near-cached record may be.
    near_cache_ttl_seconds: float
    #: How long a worker's memo keeps a record it read, at most.
    memo_seconds: float
    #: Records a worker's memo keeps (the oldest go first past this).
    memo_size: int
    #: How often each worker reads the change log.
    log_poll_seconds: float
