"""The limiter's settings, read once from ``RATELIMIT_*`` environment variables, and the
typed configuration each strategy is built from.

The defaults live in :class:`LimiterSettings` and nowhere else (the service adds its own
fields in :class:`api.settings.Settings`, a subclass); docs/operations.md lists every one in a
table that ``tests/unit/test_settings.py`` keeps in step. The strategy classes take
:class:`StrategyConfig`, :class:`LockConfig` and :class:`CasConfig`, which have no defaults
of their own, so a value can only come from here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Literal, Self, cast, get_args

from limiter.errors import SettingsError

__all__ = [
    "PREFIX",
    "STRATEGY_NAMES",
    "CasConfig",
    "LimiterSettings",
    "LockConfig",
    "ShardCalls",
    "StrategyConfig",
    "StrategyName",
    "choices",
]

StrategyName = Literal["lock", "cas", "entry_processor"]
STRATEGY_NAMES: tuple[StrategyName, ...] = get_args(StrategyName)
#: How the entry processor calls the cluster over several shard entries (limiter.entry_processor).
ShardCalls = Literal["fan_out", "per_shard"]
PREFIX = "RATELIMIT_"


def choices(*allowed: str) -> dict[str, Any]:
    """Field metadata: the only values the field accepts."""
    return {"choices": allowed}


#: Field metadata: zero is a meaningful value of this number (every other must be positive).
ZERO_ALLOWED = {"zero_allowed": True}


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """What every strategy needs (see :class:`limiter.strategy.Strategy`)."""

    decision_timeout_seconds: float
    expiry_grace_seconds: float
    max_queued_per_key: int
    deny_cache_size: int
    counter_shards: int = 1
    shard_calls: ShardCalls = "per_shard"
    batch_window_seconds: float = 0.0
    batch_limit: int = 1


@dataclasses.dataclass(frozen=True)
class LockConfig:
    """The lock strategy's own (see :class:`limiter.lock.LockStrategy`)."""

    lease_seconds: float
    wait_seconds: float


@dataclasses.dataclass(frozen=True)
class CasConfig:
    """The cas strategy's own (see :class:`limiter.cas.CasStrategy`)."""

    max_attempts: int
    backoff_max_ms: float


@dataclasses.dataclass(frozen=True)
class LimiterSettings:
    """The cluster connection and the strategies. Field ``x`` is read from ``RATELIMIT_X``."""

    #: Which atomic strategy makes a decision: lock, cas or entry_processor.
    strategy: StrategyName = dataclasses.field(
        default="entry_processor", metadata=choices(*STRATEGY_NAMES)
    )
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
    #: A lane (a key, or a shard of the entry processor) that gathered at least two
    #: requests while its cluster call ran is busy: before its next call it waits up to
    #: this long for more, so that under load calls are fewer and carry more. A lane that
    #: is not busy never waits. 0: never wait.
    batch_window_seconds: float = dataclasses.field(default=0.001, metadata=ZERO_ALLOWED)
    #: A busy lane holding this many requests calls at once, without waiting.
    batch_limit: int = 8
    #: Exhausted windows one worker remembers, answering 429 locally until each ends.
    deny_cache_size: int = 10000
    #: Counter keys live until their window ends plus this much. It must cover the clock
    #: skew between deciders plus the time from reading the clock to the write landing
    #: (at most the decision timeout): a key that expires before its window really ended
    #: would let the next request start afresh in it.
    expiry_grace_seconds: float = 2.0
    #: The largest clock difference expected between replicas (lock, cas) or members
    #: (entry_processor); keep clocks synchronised (NTP) well within it.
    max_clock_skew_seconds: float = 0.5
    #: The window counters' map; tests give each run a fresh one.
    counters_map: str = "ratelimit.counters"
    #: entry_processor: the windows of all clients live in this many shard entries (at
    #: least one) of the map ``{counters_map}.shards``, and a worker decides everything it
    #: has queued with one cluster call (``shard_calls``, :mod:`limiter.entry_processor`).
    #: Every replica must use the same value, as it must use the same strategy: the shard
    #: entries of another count are other entries. 1 by default: on a small machine, where
    #: members and replicas share the cores, one shard was 1.5-1.9 times the rate of 271
    #: at 1,000 clients (fewer, cheaper calls). 271, Hazelcast's default partition count,
    #: spreads the shards over every member's partition threads as the partitions do, and
    #: a member joining or leaving moves a few small entries, not all windows: for a
    #: cluster that outgrows one partition thread (docs/design.md, "Shards over every
    #: member").
    counter_shards: int = 1
    #: entry_processor with more than one shard: ``fan_out``, one ``execute_on_keys`` call
    #: per batch over every shard entry it touches (the member asked fans it out to the
    #: owners; their backups are asynchronous), or ``per_shard``, one ``execute_on_key``
    #: call per shard entry (each answered after its synchronous backup). A batch that
    #: touches one shard entry is always one ``execute_on_key``. See docs/design.md, "One
    #: call per batch".
    #: ``per_shard`` by default: every decision answered after its synchronous backup, so a
    #: member's death loses no answered count; ``fan_out`` is faster but gives that up.
    shard_calls: ShardCalls = dataclasses.field(
        default="per_shard", metadata=choices(*get_args(ShardCalls))
    )

    def __post_init__(self) -> None:
        if self.counter_shards < 1:
            raise SettingsError(
                f"RATELIMIT_COUNTER_SHARDS must be 1 or more, got {self.counter_shards}: every "
                "client window lives in one of that many shard entries (0, one entry per "
                "window, is no longer a layout)"
            )
        for field in dataclasses.fields(self):
            allowed = field.metadata.get("choices")
            value = getattr(self, field.name)
            if allowed and value not in allowed:
                raise SettingsError(
                    f"{PREFIX}{field.name.upper()}={value!r} is not one of: {', '.join(allowed)}"
                )
            if isinstance(value, int | float) and not isinstance(value, bool):
                zero_allowed = field.metadata.get("zero_allowed", False)
                if value < 0 or (value == 0 and not zero_allowed):
                    least = "0 or more" if zero_allowed else "positive"
                    raise SettingsError(
                        f"{PREFIX}{field.name.upper()} must be {least}, got {value}"
                    )
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
        if self.expiry_grace_seconds < self.max_clock_skew_seconds + self.decision_timeout_seconds:
            raise SettingsError(
                "RATELIMIT_EXPIRY_GRACE_SECONDS must be at least RATELIMIT_MAX_CLOCK_SKEW_SECONDS "
                "+ RATELIMIT_DECISION_TIMEOUT_SECONDS, or a decider whose clock is ahead can "
                "write a counter that expires before its window ends"
            )
        if not self.member_addresses:
            raise SettingsError("RATELIMIT_HAZELCAST_MEMBERS names no member")

    @property
    def strategy_config(self) -> StrategyConfig:
        return StrategyConfig(
            decision_timeout_seconds=self.decision_timeout_seconds,
            expiry_grace_seconds=self.expiry_grace_seconds,
            max_queued_per_key=self.max_queued_per_key,
            deny_cache_size=self.deny_cache_size,
            counter_shards=self.counter_shards,
            shard_calls=self.shard_calls,
            batch_window_seconds=self.batch_window_seconds,
            batch_limit=self.batch_limit,
        )

    @property
    def lock_config(self) -> LockConfig:
        return LockConfig(
            lease_seconds=self.lock_lease_seconds, wait_seconds=self.lock_wait_seconds
        )

    @property
    def cas_config(self) -> CasConfig:
        return CasConfig(max_attempts=self.cas_max_attempts, backoff_max_ms=self.cas_backoff_max_ms)

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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Reads every field of this class (subclasses included) from the environment;
        ``overrides`` win over it."""
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
