"""``ShouldRateLimit``: one Envoy request, every descriptor decided, all or none counted.

Each request descriptor is matched (:mod:`rls.matching`, or its own ``limit`` override,
which upstream prefers to the configuration), its ``replaces`` applied, and each one with
a rule is decided by the replica's strategy exactly as the HTTP routes decide a client:
:meth:`limiter.Strategy.decide_policy` with the descriptor's counter key as the client id
and its hits as the cost. The descriptors are submitted together, so the lanes put those
that share a shard entry into one cluster call.

**A request denied by any descriptor is counted by none.** Descriptors are different
keys, which no single atomic step covers in every layout, so the service works in two:

1. before any cluster call, every descriptor is asked of the worker's deny cache
   (:meth:`limiter.Strategy.known_denial`) and checked for ``requests_per_unit: 0``; one
   known denial answers OVER_LIMIT at once and nothing is counted anywhere. Under a
   flood this is the common case: once a key is exhausted, requests carrying it cost no
   cluster call and count in none of their other descriptors;
2. otherwise every descriptor is decided (each all-or-nothing over its own limits), and
   if one of them denies, every descriptor that admitted is given back
   (:meth:`limiter.Strategy.refund_policy`), in the background, by the decision timeout.

Between a decision and its refund (about one cluster round trip), a concurrent request
sees the given-back hits as still counted: it may be denied where it would have been
admitted, never admitted beyond a limit. A refund that cannot be made in time (the
cluster busy or away) is lost, which is the same under-admission, counted in
``ratelimit_refunds_total{outcome="lost"}``. envoyproxy/ratelimit counts every descriptor
of every request, denied or not.

A rule in ``shadow_mode`` is decided and counted but always answers OK; a descriptor
with no rule, or an ``unlimited`` one, answers OK and counts nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.duration_pb2 import Duration
from sanic.log import error_logger

from api.headers import policy_field, rate_limit_item, retry_after_seconds
from limiter import BackendError, Limit, Policy, PolicyDecision, Reason, Strategy
from limiter.refund import counted
from rls import metrics
from rls.config import Config, Rule
from rls.errors import RequestError
from rls.limits import RateLimitSpec, override_spec, unit_of
from rls.matching import Match, counter_key, drop_replaced, match

__all__ = ["MAX_DESCRIPTORS", "MAX_HITS", "Decider", "Outcome", "Verdict"]

#: Most descriptors one request may carry (Envoy sends one per rate limit action).
MAX_DESCRIPTORS = 64
#: Hits above every limit are denied whatever their number; they are capped here so that
#: a cost always fits the 64-bit numbers the cluster stores.
MAX_HITS = 2**53
#: Added to the time since a decision was sent when giving it back: the refund then
#: touches only a window that began at least this long before the decision, which covers
#: a refund that travels slower than its decision did and clocks of replicas a little
#: apart (a window that began in between keeps the hits: an under-admission).
REFUND_MARGIN_MS = 50
Response = rls_pb2.RateLimitResponse
OK = Response.OK
OVER_LIMIT = Response.OVER_LIMIT
#: Descriptors whose match a worker remembers (per configuration) before starting over.
MATCH_CACHE_SIZE = 65_536
#: Envoy's unit names, by this service's unit names.
_UNIT_CODES = {name.lower(): code for name, code in Response.RateLimit.Unit.items()}


@dataclasses.dataclass(slots=True)
class Verdict:
    """One request descriptor: its rule (``match``; None: no rule, or replaced), its hits,
    and its decision once decided (None: not decided, because another descriptor was
    already known to deny the request). ``policy`` and ``enforced`` are worked out once:
    every later step reads them."""

    match: Match | None
    hits: int
    metric_key: str = ""
    #: What the limiter decides with (None: no rule, unlimited or blocked).
    policy: Policy | None = None
    #: Whether this descriptor can deny the request (a rule, not in shadow mode).
    enforced: bool = False
    decision: PolicyDecision | None = None
    #: Whether ``decision`` is the deny cache's (nothing was asked of the cluster).
    cached: bool = False

    @classmethod
    def of(cls, found: Match | None, hits: int, metric_key: str) -> Verdict:
        if found is None:
            return cls(None, hits)
        enforced = not found.shadow and not found.unlimited
        return cls(found, hits, metric_key, found.policy, enforced)

    @property
    def denies(self) -> bool:
        """Whether this descriptor denies the request."""
        if not self.enforced:
            return False
        assert self.match is not None
        if self.match.blocked:
            return True
        return self.decision is not None and not self.decision.allowed

    @property
    def counted(self) -> bool:
        """Whether the cluster counted this descriptor's hits."""
        return self.decision is not None and self.decision.allowed and not self.cached


@dataclasses.dataclass(slots=True)
class Outcome:
    """A request's answer before it becomes a protobuf: every descriptor's verdict."""

    domain: str
    verdicts: list[Verdict]
    #: Whether the request is over the limit (some enforced descriptor denies it).
    denied: bool = False


class Decider:
    """Decides ``ShouldRateLimit`` requests for one worker: its configuration, strategy,
    and the refunds it has still to make."""

    def __init__(self, near_limit_share: float, decision_timeout_seconds: float) -> None:
        self.near_limit_share = near_limit_share
        self.decision_timeout_seconds = decision_timeout_seconds
        self._refunds: set[asyncio.Task[None]] = set()
        self._matched_in: Config | None = None
        self._matches: dict[tuple[str, tuple[tuple[str, str], ...]], Match | None] = {}

    async def decide(
        self,
        request: rls_pb2.RateLimitRequest,
        config: Config,
        strategy: Strategy,
        deadline: float,
    ) -> Outcome:
        """Every descriptor of ``request`` decided by ``deadline`` (event-loop time).
        Raises :class:`rls.errors.RequestError` for a request that cannot be answered and
        :class:`limiter.BackendError` when the cluster cannot be reached (after giving
        back what was counted)."""
        outcome = Outcome(request.domain, self._verdicts(request, config))
        decided = [v for v in outcome.verdicts if v.policy is not None]
        known = self._known_denials(decided, strategy)
        if known or any(v.denies for v in outcome.verdicts):
            outcome.denied = True
            self._count(outcome)
            return outcome
        sent = time.monotonic()
        answers = await strategy.decide_policies(
            [(v.match.counter_key, v.policy, v.hits) for v in decided if v.match and v.policy],
            deadline=deadline,
        )
        failure: BackendError | None = None
        for verdict, answer in zip(decided, answers, strict=True):
            if isinstance(answer, BackendError):
                failure = failure or answer
            else:
                verdict.decision = answer
        outcome.denied = failure is None and any(v.denies for v in decided)
        if failure is not None or outcome.denied:
            self._give_back([v for v in decided if v.counted], strategy, sent)
        if failure is not None:
            raise failure
        self._count(outcome)
        return outcome

    def _verdicts(self, request: rls_pb2.RateLimitRequest, config: Config) -> list[Verdict]:
        if not request.domain:
            raise RequestError("rate limit domain must not be empty")
        if not request.descriptors:
            raise RequestError("rate limit descriptor list must not be empty")
        if len(request.descriptors) > MAX_DESCRIPTORS:
            raise RequestError(f"at most {MAX_DESCRIPTORS} descriptors per request")
        if config is not self._matched_in:
            self._matched_in = config
            self._matches.clear()
        request_hits = request.hits_addend or 1
        matches: list[Match | None] = []
        hits: list[int] = []
        for descriptor in request.descriptors:
            entries = tuple((entry.key, entry.value) for entry in descriptor.entries)
            if descriptor.HasField("limit"):
                matches.append(_override(config, request.domain, descriptor, entries))
            else:
                matches.append(self._match(config, request.domain, entries))
            own = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else 0
            hits.append(min(own or request_hits, MAX_HITS))
        if any(m is not None and m.replaces for m in matches):
            matches = drop_replaced(matches)
        verdicts = []
        for descriptor, found, count in zip(request.descriptors, matches, hits, strict=True):
            key = _metric_key(found, descriptor) if found is not None else ""
            verdicts.append(Verdict.of(found, count, key))
        return verdicts

    def _match(
        self, config: Config, domain: str, entries: tuple[tuple[str, str], ...]
    ) -> Match | None:
        """:func:`rls.matching.match`, remembered per configuration: the same descriptors
        come again and again (every request of a client), and their counter keys cost
        percent-encoding each time. Bounded: emptied past :data:`MATCH_CACHE_SIZE`."""
        key = (domain, entries)
        if key in self._matches:
            return self._matches[key]
        if len(self._matches) >= MATCH_CACHE_SIZE:
            self._matches.clear()
        found = self._matches[key] = match(config, domain, entries)
        return found

    def _known_denials(self, decided: Sequence[Verdict], strategy: Strategy) -> bool:
        """Whether a descriptor the worker already knows to be exhausted denies the
        request (its cached decision is kept for the answer)."""
        found = False
        for verdict in decided:
            if not verdict.enforced:
                continue
            assert verdict.match is not None and verdict.policy is not None
            cached = strategy.known_denial(verdict.match.counter_key, verdict.policy, verdict.hits)
            if cached is not None:
                verdict.decision = cached
                verdict.cached = True
                found = True
        return found

    def _give_back(self, verdicts: Sequence[Verdict], strategy: Strategy, sent: float) -> None:
        """Refunds, in the background, what each of ``verdicts`` counted for a request
        that is denied (or failed) as a whole."""
        for verdict in verdicts:
            task = asyncio.get_running_loop().create_task(self._refund(verdict, strategy, sent))
            self._refunds.add(task)
            task.add_done_callback(self._refunds.discard)

    async def _refund(self, verdict: Verdict, strategy: Strategy, sent: float) -> None:
        assert verdict.match is not None and verdict.policy is not None
        assert verdict.decision is not None
        elapsed_ms = int((time.monotonic() - sent) * 1000) + REFUND_MARGIN_MS
        try:
            await strategy.refund_policy(
                verdict.match.counter_key,
                verdict.policy,
                verdict.hits,
                counted(verdict.decision),
                elapsed_ms=elapsed_ms,
            )
        except Exception:  # a lost refund is an under-admission, never an error
            error_logger.exception("refund of %s failed", verdict.match.counter_key)

    def _count(self, outcome: Outcome) -> None:
        """Each descriptor's hits in the upstream-named metrics."""
        for verdict in outcome.verdicts:
            if verdict.match is None or verdict.match.unlimited:
                continue
            counts = metrics.Hits(outcome.domain, verdict.metric_key)
            decision = verdict.decision
            if verdict.match.blocked:
                shadow = verdict.match.shadow
                counts.count(verdict.hits, admitted=False, near=False, shadow_denied=shadow)
            elif decision is None or decision.reason is Reason.CONTENDED:
                counts.count(verdict.hits, admitted=None, near=False, shadow_denied=False)
            else:
                shadow_denied = verdict.match.shadow and not decision.allowed
                counts.count(
                    verdict.hits,
                    admitted=decision.allowed or shadow_denied,
                    near=decision.allowed and self._near(decision),
                    shadow_denied=shadow_denied,
                )

    def _near(self, decision: PolicyDecision) -> bool:
        closest = decision.decisions[decision.closest]
        return closest.remaining <= self.near_limit_share * closest.limit

    async def close(self) -> None:
        """Waits for the refunds still running (each is bounded by the decision timeout)."""
        if self._refunds:
            await asyncio.gather(*self._refunds, return_exceptions=True)


def _override(
    config: Config,
    domain: str,
    descriptor: ratelimit_pb2.RateLimitDescriptor,
    entries: Sequence[tuple[str, str]],
) -> Match | None:
    """The descriptor's own ``limit``, used instead of the configuration's rule when the
    domain is known (upstream's order); no limit for an unknown domain."""
    if domain not in config.domains or not entries:
        return None
    override = descriptor.limit
    unit = Response.RateLimit.Unit.Name(override.unit).lower()
    try:
        spec = override_spec(override.requests_per_unit, unit)
    except KeyError:
        raise RequestError(f"limit override has an unknown unit ({unit})") from None
    keys = ".".join(key for key, _ in entries)
    return Match(domain, _override_rule(spec, keys), counter_key(domain, entries))


def _override_rule(spec: RateLimitSpec, keys: str) -> Rule:
    return Rule(spec, False, False, False, "", "limit override", stat_key=keys)


def _metric_key(found: Match, descriptor: ratelimit_pb2.RateLimitDescriptor) -> str:
    """The ``key`` label of a descriptor's counts: its rule's key, or with
    ``detailed_metric`` the request's own keys and values (capped per process)."""
    rule_key = found.rule.stat_key
    if not found.rule.detailed_metric:
        return rule_key
    values = ".".join(
        f"{entry.key}_{entry.value}" if entry.value else entry.key for entry in descriptor.entries
    )
    return metrics.detailed_key(rule_key, values)


def response(outcome: Outcome) -> rls_pb2.RateLimitResponse:
    """The protobuf answer: the overall code, a status per descriptor in request order,
    and the IETF ``RateLimit``/``RateLimit-Policy`` headers (``Retry-After`` when over the
    limit) for Envoy to add to its answer."""
    return Response(
        overall_code=OVER_LIMIT if outcome.denied else OK,
        statuses=[_status(verdict) for verdict in outcome.verdicts],
        response_headers_to_add=[
            base_pb2.HeaderValue(key=name, value=value) for name, value in _headers(outcome).items()
        ],
    )


def _status(verdict: Verdict) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    code = OVER_LIMIT if verdict.denies else OK
    found, policy, decision = verdict.match, verdict.policy, verdict.decision
    if found is None or found.unlimited:
        return Response.DescriptorStatus(code=code)
    if policy is None:  # blocked: requests_per_unit 0
        return Response.DescriptorStatus(
            code=code, current_limit=Response.RateLimit(name=found.name or "")
        )
    index = decision.closest if decision is not None else _first_enforced(policy)
    current = _current_limit(policy.limits[index])
    if decision is None:
        return Response.DescriptorStatus(code=code, current_limit=current)
    closest = decision.decisions[index]
    reset_ms = max(closest.reset_after_ms, 0)
    return Response.DescriptorStatus(
        code=code,
        current_limit=current,
        limit_remaining=min(closest.remaining, 2**32 - 1),
        duration_until_reset=Duration(seconds=reset_ms // 1000, nanos=reset_ms % 1000 * 1_000_000),
    )


@functools.lru_cache(maxsize=4096)
def _current_limit(limit: Limit) -> rls_pb2.RateLimitResponse.RateLimit:
    """A limit as Envoy's ``RateLimit``: built once per limit (messages are copied into
    each status, never changed)."""
    return Response.RateLimit(
        name=limit.name,
        requests_per_unit=min(limit.limit, 2**32 - 1),
        unit=_UNIT_CODES.get(unit_of(limit.window_seconds) or "unknown", 0),
    )


def _first_enforced(policy: Policy) -> int:
    return next(i for i, limit in enumerate(policy.limits) if limit.enforced)


def _headers(outcome: Outcome) -> dict[str, str]:
    """``RateLimit-Policy``: every enforced limit of every enforced descriptor;
    ``RateLimit``: the descriptor that denied (the first), or the one closest to denying;
    ``Retry-After``: when every denying descriptor admits again."""
    shown = [v for v in outcome.verdicts if v.enforced and v.policy is not None]
    if not shown:
        return {}
    headers = {"RateLimit-Policy": ", ".join(policy_field(v.policy) for v in shown if v.policy)}
    decided = [v for v in shown if v.decision is not None]
    if not decided:
        return headers
    denying = [v for v in decided if v.denies]
    reported = denying[0] if denying else min(decided, key=_share_left)
    assert reported.policy is not None and reported.decision is not None
    headers["RateLimit"] = rate_limit_item(reported.policy, reported.decision)
    waits = [retry_after_seconds(v.decision) for v in denying if v.decision is not None]
    known = [w for w in waits if w is not None]
    if known and len(known) == len(waits):
        headers["Retry-After"] = str(max(known))
    return headers


def _share_left(verdict: Verdict) -> float:
    assert verdict.decision is not None
    closest = verdict.decision.decisions[verdict.decision.closest]
    return closest.remaining / max(closest.limit, 1)
