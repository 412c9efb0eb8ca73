"""The service's settings: the limiter's (:class:`limiter.LimiterSettings`) and the HTTP
service's own, read together once from ``RATELIMIT_*`` variables (``Settings.from_env``).

Every default lives in a field here or in the limiter's; docs/operations.md lists them all.
"""

from __future__ import annotations

import dataclasses

from limiter import Alignment, LimiterSettings, SettingsError
from limiter.settings import ZERO_ALLOWED, choices
from registry import RegistryConfig

__all__ = ["ALIGNMENT_NAMES", "Settings"]

ALIGNMENT_NAMES: tuple[str, ...] = tuple(alignment.value for alignment in Alignment)


@dataclasses.dataclass(frozen=True)
class Settings(LimiterSettings):
    """The limiter's settings plus the HTTP service's. Field ``x`` is read from ``RATELIMIT_X``."""

    #: The registry's maps (client records, names); tests give each run fresh ones.
    clients_map: str = "ratelimit.clients"
    names_map: str = "ratelimit.names"
    #: Limits of a new client when the request names none (the original's 100 per 60 s).
    default_limit: int = 100
    default_window_seconds: int = 60
    #: Where a new client's windows start when the request names no ``window_alignment``:
    #: "first_request" (a window opens at the first request after the last one ended, as
    #: in the original service; resets spread over time) or "clock" (at multiples of the
    #: window length, the same instant for every client). docs/design.md argues the default.
    default_window_alignment: str = dataclasses.field(
        default="first_request", metadata=choices(*ALIGNMENT_NAMES)
    )
    #: Longest window a client may have; hazelcast.xml's counter-map TTL must exceed it.
    max_window_seconds: int = 86400
    #: Largest limit a client may have.
    max_limit: int = 1_000_000_000
    #: Largest X-RateLimit-Cost a request may carry (400 above it); not above max_limit.
    max_cost: int = 1000
    #: An admitted request that leaves its closest limit with at most this share of the
    #: limit remaining is counted in ratelimit_near_limit_total (0 to 1; 0 counts only the
    #: requests that exhaust it).
    near_limit_share: float = dataclasses.field(default=0.1, metadata=ZERO_ALLOWED)
    #: When no decision can be had in time: "open" admits (marked in a header and a
    #: metric), "closed" answers 503 with Retry-After.
    failure_mode: str = dataclasses.field(default="open", metadata=choices("open", "closed"))
    #: Bearer token of the client-management routes; empty disables them (403).
    admin_token: str = ""
    #: HTTP listener of one replica.
    host: str = "127.0.0.1"
    port: int = 8081
    #: Sanic worker processes per replica.
    workers: int = 1
    #: gRPC listener of one replica (Envoy's RateLimitService and grpc.health.v1), on
    #: RATELIMIT_HOST; 0 turns it off. Every worker of the replica listens on it.
    grpc_port: int = dataclasses.field(default=8281, metadata=ZERO_ALLOWED)
    #: The directory of envoyproxy/ratelimit configuration files the gRPC service
    #: decides by; empty: the example in the package (rls/examples).
    rls_config_dir: str = ""
    #: How often each worker looks for a changed configuration file; a file that fails
    #: validation is rejected (logged, counted) and the previous configuration stays.
    rls_reload_seconds: float = 1.0
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
    #: How long a worker keeps a client record in its own memo in front of the near
    #: cache, at most. The memo follows the cluster's change events (a PATCH or DELETE
    #: reaches it as soon as the event does) and the registry's change log, read every
    #: RATELIMIT_REGISTRY_LOG_POLL_SECONDS, which catches an event a member dropped; it
    #: is emptied whenever events could be lost with a connection (the cluster lost, a
    #: member joining or leaving, a connection opening or closing). This life bounds only
    #: a change both missed: its writer stopped between the write and its log entry while
    #: a member dropped its event. A hit does not extend it: a client pays one read per
    #: this life.
    registry_memo_seconds: float = 3600.0
    #: How often each worker reads the registry's change log. A change whose event was
    #: lost is seen within about this long; the memo is not served once five polls in a
    #: row failed.
    registry_log_poll_seconds: float = 1.0
    #: Records a worker keeps in that memo (the oldest go first past this).
    registry_memo_size: int = 100_000

    @property
    def registry_config(self) -> RegistryConfig:
        return RegistryConfig(
            clients_map=self.clients_map,
            names_map=self.names_map,
            near_cache_ttl_seconds=self.registry_near_cache_ttl_seconds,
            memo_seconds=self.registry_memo_seconds,
            memo_size=self.registry_memo_size,
            log_poll_seconds=self.registry_log_poll_seconds,
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.default_window_seconds > self.max_window_seconds:
            raise SettingsError(
                "RATELIMIT_DEFAULT_WINDOW_SECONDS exceeds RATELIMIT_MAX_WINDOW_SECONDS"
            )
        if self.max_cost > self.max_limit:
            # A cost above every limit is always denied; the bound also keeps a cost
            # within the 64-bit numbers the entry processor carries.
            raise SettingsError("RATELIMIT_MAX_COST exceeds RATELIMIT_MAX_LIMIT")
        if self.near_limit_share > 1:
            raise SettingsError("RATELIMIT_NEAR_LIMIT_SHARE must be at most 1")
