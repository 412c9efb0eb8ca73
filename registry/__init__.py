"""The client registry: who may call, with which limits.

A domain of its own beside :mod:`limiter` (which it uses for the cluster's errors and a
record's policy), unaware of HTTP: the service maps its errors to statuses in one
place and receives its reports through an :class:`Observer`. One concept per module:

- :mod:`registry.records`   a client record and the canonical form of a client id
- :mod:`registry.store`     the two maps on the cluster, every read and write of them
- :mod:`registry.memo`      each worker's memo of records, and when it may be trusted
- :mod:`registry.changes`   change events and the change log that keep the memo current
- :mod:`registry.registry`  :class:`Registry`, the three together as a worker uses them
- :mod:`registry.config`    what it is built from (:class:`RegistryConfig`)
- :mod:`registry.observer`  what it reports (:class:`Observer`)
- :mod:`registry.errors`    what it raises (:class:`RegistryError` and its tree)
"""

from __future__ import annotations

from registry.changes import changes_log_name
from registry.config import RegistryConfig
from registry.errors import NameTaken, RegistryError, StoreUnavailable, UpdateConflict
from registry.memo import LOG_TRUST_POLLS
from registry.observer import LogFailure, NullObserver, Observer
from registry.records import ClientRecord, parse_client_id
from registry.registry import UPDATE_ATTEMPTS, PolicyChange, Registry
from registry.store import near_cache_config

__all__ = [
    "LOG_TRUST_POLLS",
    "UPDATE_ATTEMPTS",
    "ClientRecord",
    "LogFailure",
    "NameTaken",
    "NullObserver",
    "Observer",
    "PolicyChange",
    "Registry",
    "RegistryConfig",
    "RegistryError",
    "StoreUnavailable",
    "UpdateConflict",
    "changes_log_name",
    "near_cache_config",
    "parse_client_id",
]
