"""The rate limit service's metrics, named as envoyproxy/ratelimit's, so that dashboards and
alerts written for it read these unchanged.

Upstream emits, per rule, ``ratelimit.service.rate_limit.<domain>.<key>.<stat>`` with
stat ``total_hits``, ``over_limit``, ``near_limit``, ``within_limit`` and
``shadow_mode``, each counting hits (a request's ``hits_addend``, not requests); its
Prometheus mapping (the statsd exporter's, in upstream's examples) turns them into
``ratelimit_service_rate_limit_<stat>{domain, key1}``. Here they are Prometheus counters
of those names (exposed with ``_total``), labelled ``domain`` and ``key``: the rule's key
in the tree (:attr:`rls.config.Rule.stat_key`, ``path_/search.user_id``), a bounded set
that only the configuration defines. A rule with ``detailed_metric: true`` is labelled
with the request's values instead (``remote_address_192.0.2.7``), as upstream does; those
are unbounded, so each process labels the first :data:`MAX_DETAILED_KEYS` and counts the
rest under the rule's own key with the suffix ``._other``.

Also the service's own: configuration loads by outcome (a rejected file is one), and
answers by code.
"""

from __future__ import annotations

from prometheus_client import Counter

from api.metrics import REGISTRY, TALLY, labelled

__all__ = [
    "CONFIG_LOADS",
    "MAX_DETAILED_KEYS",
    "RLS_ANSWERS",
    "Hits",
    "config_loaded",
    "count_answer",
    "detailed_key",
]

#: Distinct per-value keys (``detailed_metric``) one process labels; later ones are
#: counted under ``<rule key>._other``.
MAX_DETAILED_KEYS = 100


def _stat(stat: str, meaning: str) -> Counter:
    return Counter(
        f"ratelimit_service_rate_limit_{stat}",
        f"Rate limit service (Envoy's ShouldRateLimit): {meaning}, in hits (hits_addend), "
        "by domain and configured descriptor key, as envoyproxy/ratelimit names it.",
        ["domain", "key"],
        registry=REGISTRY,
    )


TOTAL_HITS = _stat("total_hits", "hits on a descriptor that has a rate limit")
OVER_LIMIT = _stat("over_limit", "hits its rate limit denied (shadow ones included)")
NEAR_LIMIT = _stat(
    "near_limit",
    "admitted hits that left the descriptor's closest limit with at most "
    "RATELIMIT_NEAR_LIMIT_SHARE of it",
)
WITHIN_LIMIT = _stat("within_limit", "hits its rate limit admitted")
SHADOW_MODE = _stat(
    "shadow_mode", "hits a rule in shadow_mode would have denied (answered OK instead)"
)
CONFIG_LOADS = Counter(
    "ratelimit_rls_config_loads",
    "Loads of the rate limit service's configuration directory by outcome: loaded, or "
    "rejected (a file failed validation; the previous configuration stays in force).",
    ["outcome"],
    registry=REGISTRY,
)
RLS_ANSWERS = Counter(
    "ratelimit_rls_answers",
    "ShouldRateLimit answers by code: ok, over_limit, invalid (INVALID_ARGUMENT), "
    "unavailable (UNAVAILABLE: no configuration, or the cluster unreachable).",
    ["code"],
    registry=REGISTRY,
)
ANSWER_CODES = ("ok", "over_limit", "invalid", "unavailable")

_detailed: set[str] = set()


def detailed_key(rule_key: str, values_key: str) -> str:
    """``values_key`` as a label, for the first :data:`MAX_DETAILED_KEYS` distinct ones
    this process sees; ``<rule_key>._other`` after that."""
    if values_key in _detailed:
        return values_key
    if len(_detailed) < MAX_DETAILED_KEYS:
        _detailed.add(values_key)
        return values_key
    return f"{rule_key}._other"


class Hits:
    """The counts of one descriptor's hits under one label set, resolved once."""

    __slots__ = ("domain", "key")

    def __init__(self, domain: str, key: str) -> None:
        self.domain = domain
        self.key = key

    def count(self, hits: int, *, admitted: bool | None, near: bool, shadow_denied: bool) -> None:
        """``admitted`` None: the descriptor was not decided (another one was known to
        deny the request first), so only its total counts."""
        TALLY.inc(labelled(TOTAL_HITS, self.domain, self.key), hits)
        if admitted is None:
            return
        if admitted and not shadow_denied:
            TALLY.inc(labelled(WITHIN_LIMIT, self.domain, self.key), hits)
            if near:
                TALLY.inc(labelled(NEAR_LIMIT, self.domain, self.key), hits)
            return
        TALLY.inc(labelled(OVER_LIMIT, self.domain, self.key), hits)
        if shadow_denied:
            TALLY.inc(labelled(SHADOW_MODE, self.domain, self.key), hits)


def count_answer(code: str) -> None:
    """One ShouldRateLimit answer, by its code (one of :data:`ANSWER_CODES`)."""
    TALLY.inc(labelled(RLS_ANSWERS, code))


def config_loaded(outcome: str) -> None:
    """One load of the configuration directory: ``loaded`` or ``rejected``. Written at
    once (rare, and a test or an alert waits for it)."""
    CONFIG_LOADS.labels(outcome).inc()


def preset() -> None:
    """The service's own series at zero, so "none yet" reads as 0."""
    for outcome in ("loaded", "rejected"):
        CONFIG_LOADS.labels(outcome)
    for code in ANSWER_CODES:
        RLS_ANSWERS.labels(code)
