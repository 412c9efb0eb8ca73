"""Prometheus metrics of one replica, correct with several Sanic workers.

Every label has a small fixed set of values: strategy, outcome, error kind, route
pattern, method, status, algorithm; and limit names, which operators choose and which
are capped (:data:`MAX_LIMIT_NAMES` per process, the rest counted as ``_other``). Client
ids and names never appear.

Several workers: ``python -m api`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start, so each worker writes its samples to files there, and ``/metrics`` (answered by any
worker) sums every worker's files. Without that variable (the app embedded in one
process) the values live in this process and ``/metrics`` shows them directly.

What every request counts goes through :data:`TALLY` first: writing a value there takes
a lock and a write to a memory-mapped file, so a worker adds its requests up in plain
Python and writes the sums every :data:`FLUSH_SECONDS`, before its own ``/metrics``
answer and when it stops. A scrape answered by one worker may miss another worker's
last quarter of a second, never a count.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sanic.log import error_logger

from compat import histogram_buckets, histogram_sum, histogram_upper_bounds
from limiter import (
    REFUND_OUTCOMES,
    Algorithm,
    BackendTimeout,
    BackendUnavailable,
    ContendedCause,
    Policy,
    PolicyDecision,
    Reason,
)
from registry import LogFailure

__all__ = [
    "BACKEND_ERRORS",
    "BATCH_SIZE",
    "CAS_ATTEMPTS",
    "CONTENDED",
    "DECISIONS",
    "DECISION_SECONDS",
    "FLUSH_SECONDS",
    "HTTP_REQUESTS",
    "LOCAL_DENIALS",
    "LOCK_WAIT_SECONDS",
    "MAX_LIMIT_NAMES",
    "MULTIPROC_ENV",
    "NEAR_LIMIT",
    "REFUNDS",
    "REGISTRY_READS",
    "SHADOW_DENIALS",
    "TALLY",
    "TTL_RESTORE_FAILURES",
    "MetricsObserver",
    "RegistryMetrics",
    "Tally",
    "count_limits",
    "exposition",
    "labelled",
    "limit_name_label",
    "method_label",
    "preset",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry(auto_describe=True)

DECISIONS = Counter(
    "ratelimit_decisions",
    "Guarded requests by strategy and outcome: allowed, denied (over the limit), "
    "contended (key too busy to decide in time; denied), peek (X-RateLimit-Cost 0: "
    "usage read, nothing counted), fail_open (cluster unreachable, admitted) or "
    "fail_closed (cluster unreachable, 503).",
    ["strategy", "outcome"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "ratelimit_decision_seconds",
    "Time to decide one guarded request (registry lookup and decision), by strategy.",
    ["strategy"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    registry=REGISTRY,
)
CAS_ATTEMPTS = Histogram(
    "ratelimit_cas_attempts",
    "cas strategy: attempts one decision took (1 = no lost race).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256),
    registry=REGISTRY,
)
LOCK_WAIT_SECONDS = Histogram(
    "ratelimit_lock_wait_seconds",
    "lock strategy: time spent acquiring the window's lock.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
    registry=REGISTRY,
)
TTL_RESTORE_FAILURES = Counter(
    "ratelimit_ttl_restore_failures",
    "cas strategy: counter TTLs that could not be restored after a replace "
    "(the map-level TTL still bounds those keys).",
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "ratelimit_batch_size",
    "Requests decided by one cluster operation (requests for one key, or for one shard "
    "of the entry processor's shard layout, queue in a worker while its operation runs, "
    "and the next operation decides them all).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=REGISTRY,
)
LOCAL_DENIALS = Counter(
    "ratelimit_deny_cache_denials",
    "Requests denied by the worker's cache of exhausted windows, without a cluster call "
    "(also counted as outcome denied).",
    ["strategy"],
    registry=REGISTRY,
)
CONTENDED = Counter(
    "ratelimit_contended",
    f"Requests denied because their key was too busy, by cause: {', '.join(ContendedCause)}.",
    ["strategy", "cause"],
    registry=REGISTRY,
)
REFUNDS = Counter(
    "ratelimit_refunds",
    "Admissions given back because another key of the same request denied it, by "
    "outcome: applied (given back, or nothing left to give back) or lost (not done in "
    "time: the request stays counted, an under-admission).",
    ["outcome"],
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "ratelimit_backend_errors",
    "Guarded requests the cluster gave no decision for (unreachable), by strategy and "
    "kind: unavailable, timeout.",
    ["strategy", "kind"],
    registry=REGISTRY,
)
REGISTRY_READS = Counter(
    "ratelimit_registry_reads",
    "Client records the guarded route read from the cluster because the worker's memo "
    "did not hold them: a client's first request to the worker, the first after a "
    "change of the record or of the connections, or one more than "
    "RATELIMIT_REGISTRY_MEMO_SECONDS after its record was read.",
    registry=REGISTRY,
)
REGISTRY_LOG_FAILURES = Counter(
    "ratelimit_registry_log_failures",
    "Polls of the registry's change log that failed (error: the memo stops being served "
    "after five in a row) or found entries gone before they were read (gap: the memo "
    "was emptied).",
    ["cause"],
    registry=REGISTRY,
)
#: Distinct limit names one process labels its series with; any later one is ``_other``
#: (which no limit name can be: a name starts with a letter).
MAX_LIMIT_NAMES = 64
OTHER_LIMIT_NAME = "_other"
SHADOW_DENIALS = Counter(
    "ratelimit_shadow_denials",
    "Decided requests a shadow limit would have denied (it never does: it is on trial), "
    "by the limit's name and algorithm. Names are an operator's choice, so each process "
    f"labels the first {MAX_LIMIT_NAMES} distinct names it sees and counts the rest as "
    f"{OTHER_LIMIT_NAME}.",
    ["limit_name", "algorithm"],
    registry=REGISTRY,
)
NEAR_LIMIT = Counter(
    "ratelimit_near_limit",
    "Admitted requests (cost 1 or more) that left the client's closest limit with at most "
    "RATELIMIT_NEAR_LIMIT_SHARE of it remaining, by that limit's algorithm: clients "
    "about to be denied.",
    ["algorithm"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "ratelimit_http_requests",
    "HTTP responses by route pattern, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Longest a worker holds counts before writing them to the Prometheus values.
FLUSH_SECONDS = 0.25


class Tally:
    """Counter increments and histogram observations of the request path, summed here
    and written to their Prometheus values in bulk by :meth:`flush`.

    In the multiprocess mode one ``inc`` costs about 1.7 µs and one observation two of
    them, about 8 µs of a guarded request's 0.2 ms of replica CPU; adding to a dict costs
    a tenth of that. Takes resolved children (:func:`labelled`) only.
    """

    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self._counts: dict[Any, float] = {}
        #: Per histogram child: the sum of its observations, then a count per bucket.
        self._observations: dict[Any, list[float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def inc(self, counter: Any, amount: float = 1.0) -> None:
        self._counts[counter] = self._counts.get(counter, 0.0) + amount
        self._due()

    def observe(self, histogram: Any, amount: float) -> None:
        bounds = histogram_upper_bounds(histogram)
        sums = self._observations.get(histogram)
        if sums is None:
            sums = self._observations[histogram] = [0.0] * (len(bounds) + 1)
        sums[0] += amount
        # The bucket Histogram.observe counts it in: the first bound at or above it.
        bucket = bisect.bisect_left(bounds, amount)
        if bucket < len(bounds):
            sums[1 + bucket] += 1
        self._due()

    def flush(self) -> None:
        """Writes every sum held to its value, now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts, self._counts = self._counts, {}
        observations, self._observations = self._observations, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, sums in observations.items():
            histogram_sum(histogram).inc(sums[0])
            for value, count in zip(histogram_buckets(histogram), sums[1:], strict=True):
                if count:
                    value.inc(count)

    def _due(self) -> None:
        """A flush within ``flush_seconds`` (at once outside an event loop)."""
        held = self._timer_loop
        if self._timer is not None and held is not None and not held.is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(self.flush_seconds, self.flush)
        self._timer_loop = loop


#: The worker's tally of the request path (flushed by :func:`exposition` and at stop).
TALLY = Tally()


@functools.lru_cache(maxsize=1024)
def labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, resolved once per label set: every label has a small
    fixed set of values, and resolving takes a lock and a dict lookup per request."""
    return metric.labels(*values)


_limit_names: set[str] = set()


def limit_name_label(name: str) -> str:
    """``name`` as a label value: itself for the first :data:`MAX_LIMIT_NAMES` distinct
    names this process sees, :data:`OTHER_LIMIT_NAME` after that (names come from every
    client's policy: without a cap, series would grow with them)."""
    if name in _limit_names:
        return name
    if len(_limit_names) < MAX_LIMIT_NAMES:
        _limit_names.add(name)
        return name
    return OTHER_LIMIT_NAME


def count_limits(policy: Policy, decision: PolicyDecision, near_share: float) -> None:
    """The per-limit counts of one decided request (cost 1 or more): each shadow limit that
    would have denied it, and, when it was admitted, whether its closest limit has at
    most ``near_share`` of its limit left. A contended denial decided nothing."""
    if decision.reason is Reason.CONTENDED:
        return
    for i in decision.shadow_denied:
        limit = policy.limits[i]
        label = limit_name_label(limit.name)
        TALLY.inc(labelled(SHADOW_DENIALS, label, limit.algorithm.value))
    if decision.allowed:
        closest = decision.decisions[decision.closest]
        if closest.remaining <= near_share * closest.limit:
            algorithm = policy.limits[decision.closest].algorithm.value
            TALLY.inc(labelled(NEAR_LIMIT, algorithm))


def method_label(method: str) -> str:
    """The method, or ``other`` for any of the unbounded rest a client can send."""
    return method if method in _METHODS else "other"


#: Every outcome and error kind a decision can have, so that each series exists from the
#: start: dashboards and alerts then read "none yet" as 0 rather than as no data.
OUTCOMES = ("allowed", "denied", "contended", "peek", "fail_open", "fail_closed")
ERROR_KINDS = tuple(kind.kind for kind in (BackendUnavailable, BackendTimeout))
CONTENDED_CAUSES = tuple(ContendedCause)


def preset(strategy: str) -> None:
    """Creates this strategy's decision and error series at zero (in this worker)."""
    DECISION_SECONDS.labels(strategy)
    for outcome in OUTCOMES:
        DECISIONS.labels(strategy, outcome)
    for kind in ERROR_KINDS:
        BACKEND_ERRORS.labels(strategy, kind)
    for contended_cause in CONTENDED_CAUSES:
        CONTENDED.labels(strategy, contended_cause)
    LOCAL_DENIALS.labels(strategy)
    for refund_outcome in REFUND_OUTCOMES:
        REFUNDS.labels(refund_outcome)
    for algorithm in Algorithm:
        NEAR_LIMIT.labels(algorithm.value)
    for log_failure in LogFailure:
        REGISTRY_LOG_FAILURES.labels(log_failure.value)


class MetricsObserver:
    """The strategies' :class:`limiter.Observer`, as Prometheus metrics."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy

    def cas_attempts(self, attempts: int) -> None:
        CAS_ATTEMPTS.observe(attempts)

    def lock_waited(self, seconds: float) -> None:
        LOCK_WAIT_SECONDS.observe(seconds)

    def ttl_restore_failed(self) -> None:
        TTL_RESTORE_FAILURES.inc()

    def batch_decided(self, size: int) -> None:
        TALLY.observe(BATCH_SIZE, size)

    def denied_locally(self) -> None:
        TALLY.inc(labelled(LOCAL_DENIALS, self.strategy))

    def contended(self, cause: ContendedCause) -> None:
        TALLY.inc(labelled(CONTENDED, self.strategy, cause))

    def refunded(self, outcome: str) -> None:
        TALLY.inc(labelled(REFUNDS, outcome))


class RegistryMetrics:
    """The registry's :class:`registry.Observer`, as Prometheus metrics and Sanic's error
    log."""

    def record_read(self) -> None:
        TALLY.inc(REGISTRY_READS)

    def log_failed(self, cause: LogFailure) -> None:
        TALLY.inc(labelled(REGISTRY_LOG_FAILURES, cause.value))

    def warning(self, message: str) -> None:
        error_logger.warning(message)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, summed over all workers when there are several."""
    TALLY.flush()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
