"""Every setting of the service, read once from ``RATELIMIT_*`` environment variables.

The defaults live here and nowhere else; README.md lists them in a table that
``tests/unit/test_settings.py`` keeps in step with this module.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

from limiter.errors import SettingsError
from limiter.rule import Alignment

__all__ = ["STRATEGY_NAMES", "Settings", "StrategyName"]

StrategyName = Literal["lock", "cas", "entry_processor"]
STRATEGY_NAMES: tuple[str, ...] = get_args(StrategyName)
ALIGNMENT_NAMES: tuple[str, ...] = tuple(alignment.value for alignment in Alignment)
PREFIX = "RATELIMIT_"


def _choice(*allowed: str) -> dict[str, Any]:
    return {"choices": allowed}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The service's configuration. Field ``x`` is read from ``RATELIMIT_X``."""

    #: Which atomic strategy makes a decision: lock, cas or entry_processor.
    strategy: str = dataclasses.field(default="entry_processor", metadata=_choice(*STRATEGY_NAMES))
    #: Comma-separated Hazelcast member addresses the client starts from.
    hazelcast_members: str = "127.0.0.1:5701,127.0.0.1:5702,127.0.0.1:5703"
    hazelcast_cluster_name: str = "ratelimit"
    #: Longest wait for the first connection to the cluster at start-up.
    connect_timeout_seconds: float = 15.0
    #: Longest a decision may take, all round trips and retries included.
    decision_timeout_seconds: float = 1.0
    #: Lease of the lock strategy's lock: released by the cluster after this even if the
    #: holder died. Well above a decision's p99.
    lock_lease_seconds: float = 2.0
    #: Longest the lock strategy waits for a busy lock before denying its batch (contended).
    lock_wait_seconds: float = 0.9
    #: cas strategy: attempts per cluster operation before its requests are denied as
    #: contended, and the cap of the jittered backoff between two attempts.
    cas_max_attempts: int = 32
    cas_backoff_max_ms: float = 8.0
    #: Requests one worker holds for a key while that key's cluster operation runs (they
    #: are decided together by the next one); past this a request is denied at once, 429
    #: ``contended``.
    max_queued_per_key: int = 1000
    #: Exhausted windows one worker remembers, answering 429 locally until each ends.
    deny_cache_size: int = 10000
    #: Counter keys live until their window ends plus this much.
    expiry_grace_seconds: float = 1.0
    #: Map names; tests give each run fresh ones.
    counters_map: str = "ratelimit.counters"
    clients_map: str = "ratelimit.clients"
    names_map: str = "ratelimit.names"
    #: Limits of a new client when the request names none (the original's 100 per 60 s).
    default_limit: int = 100
    default_window_seconds: int = 60
    #: Where a new client's windows start when the request names no ``window_alignment``:
    #: "first_request" (a window opens at the first request after the last one ended, as
    #: in the original service; resets spread over time) or "clock" (at multiples of the
    #: window length, the same instant for every client). README.md argues the default.
    default_window_alignment: str = dataclasses.field(
        default="first_request", metadata=_choice(*ALIGNMENT_NAMES)
    )
    #: Longest window a client may have; hazelcast.xml's counter-map TTL must exceed it.
    max_window_seconds: int = 86400
    #: Largest limit a client may have.
    max_limit: int = 1_000_000_000
    #: When no decision can be had in time: "open" admits (marked in a header and a
    #: metric), "closed" answers 503 with Retry-After.
    failure_mode: str = dataclasses.field(default="open", metadata=_choice("open", "closed"))
    #: Bearer token of the client-management routes; empty disables them (403).
    admin_token: str = ""
    #: HTTP listener of one replica.
    host: str = "127.0.0.1"
    port: int = 8081
    #: Sanic worker processes per replica.
    workers: int = 1
    #: Largest request body accepted (413 above it).
    max_body_bytes: int = 4096
    #: Longest client name.
    max_name_length: int = 64
    #: After SIGTERM, /ready answers 503 for this long before the replica stops, so that
    #: nginx stops sending it requests first.
    drain_seconds: float = 2.0
    #: Upper bound on how stale a replica's near-cached client record may be (the
    #: cluster also invalidates it on every change, within about a second).
    registry_near_cache_ttl_seconds: float = 5.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            value = getattr(self, field.name)
            if choices and value not in choices:
                raise SettingsError(
                    f"{PREFIX}{field.name.upper()}={value!r} is not one of: {', '.join(choices)}"
                )
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise SettingsError(f"{PREFIX}{field.name.upper()} must be positive, got {value}")
        if self.lock_lease_seconds <= self.decision_timeout_seconds:
            raise SettingsError(
                "RATELIMIT_LOCK_LEASE_SECONDS must exceed RATELIMIT_DECISION_TIMEOUT_SECONDS, "
                "or a healthy holder can lose its lock while its callers still wait"
            )
        if self.lock_wait_seconds >= self.decision_timeout_seconds:
            raise SettingsError(
                "RATELIMIT_LOCK_WAIT_SECONDS must be below RATELIMIT_DECISION_TIMEOUT_SECONDS, "
                "or a busy lock is only noticed at the decision deadline"
            )
        if self.default_window_seconds > self.max_window_seconds:
            raise SettingsError(
                "RATELIMIT_DEFAULT_WINDOW_SECONDS exceeds RATELIMIT_MAX_WINDOW_SECONDS"
            )
        if not self.member_addresses:
            raise SettingsError("RATELIMIT_HAZELCAST_MEMBERS names no member")

    @property
    def heartbeat_interval_seconds(self) -> float:
        """A worker pings the cluster when nothing answered for this long: a quarter of
        the decision timeout, so a healthy cluster answers several times while any
        request waits, and a late decision is told "busy" from "unreachable" (see
        :mod:`limiter.liveness`)."""
        return self.decision_timeout_seconds / 4

    @property
    def member_addresses(self) -> list[str]:
        return [m.strip() for m in self.hazelcast_members.split(",") if m.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Reads every field from the environment; ``overrides`` win over it."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is None:
                continue
            values[field.name] = _parse(field, raw)
        values.update(overrides)
        return cls(**values)


def _parse(field: dataclasses.Field[Any], raw: str) -> Any:
    kind = cast(type, type(field.default))
    if kind is str:
        return raw.strip()
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(
            f"{PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from None
