"""``ShouldRateLimit`` decided against an in-memory strategy that applies the real policy
rule: codes, statuses and headers, hits, overrides, replaced and shadow rules, and the
rule that a request denied by any descriptor is counted by none (known denials ask the
cluster nothing; late denials give back what the others counted)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from typing import Any, cast

import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from limiter import BackendError, BackendUnavailable, Policy, PolicyDecision, Strategy, policy_rule
from limiter.policy_rule import LimitState
from rls.config import Config, merge, parse
from rls.errors import RequestError
from rls.service import MAX_DESCRIPTORS, Decider, Outcome, response

pytestmark = pytest.mark.unit

Response = rls_pb2.RateLimitResponse
NOW_MS = 1_700_000_000_000

CONFIG = """
domain: shop
descriptors:
  - key: ip
    rate_limit: {name: per_ip, unit: minute, requests_per_unit: 5}
  - key: user
    rate_limit: {name: per_user, unit: hour, requests_per_unit: 2}
  - key: slow
    rate_limit: {name: slow, unit: minute, requests_per_unit: 1, x_algorithm: gcra}
  - key: trial
    shadow_mode: true
    rate_limit: {name: trial, unit: minute, requests_per_unit: 1}
  - key: banned
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: free
    rate_limit: {unlimited: true}
  - key: path
    value: /checkout
    descriptors:
      - key: user
        rate_limit:
          name: checkout
          replaces: [{name: per_user}]
          unit: minute
          requests_per_unit: 1
  - key: detail
    detailed_metric: true
    rate_limit: {name: detail, unit: minute, requests_per_unit: 100}
"""


def config_of(text: str) -> Config:
    return merge([parse(textwrap.dedent(text), "shop.yaml")])


class MemoryStrategy:
    """The three calls the service makes, on states kept in a dict and decided by
    :mod:`limiter.policy_rule` at a fixed time; ``deny_cached`` lists keys the "deny
    cache" knows exhausted, ``fail`` keys whose decision raises."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, Policy], tuple[LimitState | None, ...]] = {}
        self.decided: list[str] = []
        self.refunds: list[tuple[str, int, tuple[int, ...]]] = []
        self.deny_cached: set[str] = set()
        self.fail: set[str] = set()

    def _states(self, key: str, policy: Policy) -> tuple[LimitState | None, ...]:
        return self.states.get((key, policy), (None,) * len(policy.limits))

    def known_denial(self, key: str, policy: Policy, cost: int = 1) -> PolicyDecision | None:
        if key not in self.deny_cached:
            return None
        full = tuple(
            policy_rule.decide((None,), NOW_MS, limit.limit, Policy((limit,)))[0][0]
            for limit in policy.limits
        )
        return policy_rule.decide(full, NOW_MS, cost, policy)[1]

    async def decide_policy(
        self, key: str, policy: Policy, cost: int = 1, *, deadline: float | None = None
    ) -> PolicyDecision:
        self.decided.append(key)
        if key in self.fail:
            raise BackendUnavailable("member gone")
        states, decision = policy_rule.decide(self._states(key, policy), NOW_MS, cost, policy)
        self.states[(key, policy)] = states
        return decision

    async def decide_policies(
        self, requests: Sequence[tuple[str, Policy, int]], *, deadline: float
    ) -> list[PolicyDecision | BackendError]:
        answers: list[PolicyDecision | BackendError] = []
        for key, policy, cost in requests:
            try:
                answers.append(await self.decide_policy(key, policy, cost))
            except BackendError as error:
                answers.append(error)
        return answers

    async def refund_policy(
        self,
        key: str,
        policy: Policy,
        cost: int,
        counted: Sequence[int],
        *,
        elapsed_ms: int,
        deadline: float | None = None,
    ) -> bool:
        self.refunds.append((key, cost, tuple(counted)))
        return True

    def used(self, key: str, policy_of: str) -> int:
        """Hits stored for ``key`` under the rule named ``policy_of`` (fixed windows)."""
        for (stored_key, policy), states in self.states.items():
            if stored_key == key and policy.limits[0].name == policy_of:
                peek = policy_rule.peek(states, NOW_MS, policy)
                return policy.limits[0].limit - peek.decisions[0].remaining
        return 0


def descriptor(*entries: tuple[str, str], hits: int | None = None) -> Any:
    found = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
    )
    if hits is not None:
        found.hits_addend.value = hits
    return found


def ask(
    strategy: MemoryStrategy,
    *descriptors: Any,
    domain: str = "shop",
    hits: int = 0,
    config: Config | None = None,
) -> tuple[Outcome, rls_pb2.RateLimitResponse]:
    """One request, decided and turned into its protobuf answer (refunds awaited)."""
    request = rls_pb2.RateLimitRequest(domain=domain, descriptors=descriptors, hits_addend=hits)
    decider = Decider(near_limit_share=0.1, decision_timeout_seconds=1.0)

    async def run() -> Outcome:
        outcome = await decider.decide(
            request, config or config_of(CONFIG), cast(Strategy, strategy), deadline=1e18
        )
        await decider.close()
        return outcome

    outcome = asyncio.run(run())
    return outcome, response(outcome)


def headers(answer: rls_pb2.RateLimitResponse) -> dict[str, str]:
    return {h.key: h.value for h in answer.response_headers_to_add}


def test_an_admitted_descriptor_answers_ok_with_its_limit_usage_and_headers() -> None:
    """OK, the status naming the limit (per unit), what is left and the reset, and the
    IETF headers for Envoy to add."""
    strategy = MemoryStrategy()
    _, answer = ask(strategy, descriptor(("ip", "10.0.0.1")))
    assert answer.overall_code == Response.OK
    [status] = answer.statuses
    assert status.code == Response.OK
    assert (status.current_limit.name, status.current_limit.requests_per_unit) == ("per_ip", 5)
    assert status.current_limit.unit == Response.RateLimit.MINUTE
    assert status.limit_remaining == 4
    assert 0 < status.duration_until_reset.ToMilliseconds() <= 60_000
    assert headers(answer)["RateLimit-Policy"] == '"per_ip";q=5;w=60'
    assert headers(answer)["RateLimit"].startswith('"per_ip";r=4;t=')
    assert "Retry-After" not in headers(answer)


def test_the_limit_denies_past_its_count_with_retry_after() -> None:
    """The sixth request of a limit of 5 is OVER_LIMIT with 0 left and Retry-After."""
    strategy = MemoryStrategy()
    for _ in range(5):
        assert ask(strategy, descriptor(("ip", "10.0.0.1")))[1].overall_code == Response.OK
    _, answer = ask(strategy, descriptor(("ip", "10.0.0.1")))
    assert answer.overall_code == Response.OVER_LIMIT
    assert answer.statuses[0].code == Response.OVER_LIMIT
    assert answer.statuses[0].limit_remaining == 0
    assert int(headers(answer)["Retry-After"]) >= 1


def test_each_value_of_a_key_only_rule_counts_apart() -> None:
    """Two IPs under the key-only rule have a counter each."""
    strategy = MemoryStrategy()
    ask(strategy, descriptor(("ip", "a")))
    ask(strategy, descriptor(("ip", "b")))
    assert strategy.used("rls:shop|ip=a", "per_ip") == 1
    assert strategy.used("rls:shop|ip=b", "per_ip") == 1


@pytest.mark.parametrize(
    ("entries", "domain"),
    [((("nothing", "x"),), "shop"), ((("free", "x"),), "shop"), ((("ip", "x"),), "elsewhere")],
)
def test_no_rule_unlimited_and_unknown_domains_answer_ok_counting_nothing(
    entries: tuple[tuple[str, str], ...], domain: str
) -> None:
    """A descriptor no rule matches, an unlimited one and an unknown domain: OK, no limit
    in the status, no headers, no cluster call."""
    strategy = MemoryStrategy()
    _, answer = ask(strategy, descriptor(*entries), domain=domain)
    assert answer.overall_code == Response.OK
    assert not answer.statuses[0].HasField("current_limit")
    assert headers(answer) == {}
    assert strategy.decided == []


def test_a_blocked_descriptor_denies_and_nothing_is_counted() -> None:
    """``requests_per_unit: 0`` is OVER_LIMIT at once; the request's other descriptors
    are not decided."""
    strategy = MemoryStrategy()
    _, answer = ask(strategy, descriptor(("ip", "a")), descriptor(("banned", "x")))
    assert answer.overall_code == Response.OVER_LIMIT
    assert [s.code for s in answer.statuses] == [Response.OK, Response.OVER_LIMIT]
    assert strategy.decided == []


def test_a_known_denial_asks_the_cluster_nothing() -> None:
    """A descriptor the deny cache knows exhausted denies the request before any
    decision: the other descriptor is neither decided nor counted, and reports its limit
    without usage."""
    strategy = MemoryStrategy()
    strategy.deny_cached.add("rls:shop|user=u")
    _, answer = ask(strategy, descriptor(("ip", "a")), descriptor(("user", "u")))
    assert answer.overall_code == Response.OVER_LIMIT
    assert strategy.decided == []
    assert answer.statuses[0].code == Response.OK
    assert answer.statuses[0].current_limit.name == "per_ip"
    assert not answer.statuses[0].HasField("duration_until_reset")
    assert headers(answer)["RateLimit"].startswith('"per_user";r=0;')


def test_a_late_denial_gives_back_what_the_other_descriptors_counted() -> None:
    """When one descriptor denies at decision time, each descriptor that admitted is
    refunded its hits on exactly the limits that counted them."""
    strategy = MemoryStrategy()
    ask(strategy, descriptor(("slow", "s")))  # GCRA 1 per minute: the next one is denied
    _, answer = ask(strategy, descriptor(("ip", "a"), hits=2), descriptor(("slow", "s")))
    assert answer.overall_code == Response.OVER_LIMIT
    assert strategy.refunds == [("rls:shop|ip=a", 2, (0,))]


def test_an_admitted_request_gives_nothing_back() -> None:
    """Every descriptor admitting: no refund."""
    strategy = MemoryStrategy()
    _, answer = ask(strategy, descriptor(("ip", "a")), descriptor(("user", "u")))
    assert answer.overall_code == Response.OK
    assert strategy.refunds == []


def test_a_failed_decision_gives_back_the_others_and_raises() -> None:
    """The cluster failing one descriptor's decision raises for the request (Envoy's
    failure mode decides) after giving back what the others counted."""
    strategy = MemoryStrategy()
    strategy.fail.add("rls:shop|user=u")
    with pytest.raises(BackendUnavailable):
        ask(strategy, descriptor(("ip", "a")), descriptor(("user", "u")))
    assert strategy.refunds == [("rls:shop|ip=a", 1, (0,))]


def test_hits_addend_of_the_request_and_of_a_descriptor_zero_meaning_one() -> None:
    """The request's hits_addend applies to every descriptor, a descriptor's own overrides
    it, and 0 means 1 for both."""
    strategy = MemoryStrategy()
    ask(strategy, descriptor(("ip", "a")), descriptor(("ip", "b"), hits=1), hits=3)
    ask(strategy, descriptor(("ip", "c"), hits=0), hits=0)
    assert strategy.used("rls:shop|ip=a", "per_ip") == 3
    assert strategy.used("rls:shop|ip=b", "per_ip") == 1
    assert strategy.used("rls:shop|ip=c", "per_ip") == 1


def test_hits_over_the_limit_are_denied_without_retry_after() -> None:
    """More hits than the limit can ever admit: OVER_LIMIT, and no Retry-After (waiting
    never helps)."""
    strategy = MemoryStrategy()
    _, answer = ask(strategy, descriptor(("ip", "a"), hits=6))
    assert answer.overall_code == Response.OVER_LIMIT
    assert "Retry-After" not in headers(answer)


def test_a_limit_override_replaces_the_configured_rule() -> None:
    """A descriptor's own ``limit`` (2 per minute) is used instead of the file's, even for
    entries no rule matches, and named after its unit."""
    strategy = MemoryStrategy()
    override = descriptor(("nothing", "x"))
    override.limit.requests_per_unit = 2
    override.limit.unit = Response.RateLimit.MINUTE
    codes = [ask(strategy, override)[1].overall_code for _ in range(3)]
    assert codes == [Response.OK, Response.OK, Response.OVER_LIMIT]
    assert ask(strategy, override)[1].statuses[0].current_limit.name == "per_minute"


def test_a_limit_override_with_no_unit_is_an_invalid_request() -> None:
    """An override whose unit is UNKNOWN cannot be decided: INVALID_ARGUMENT."""
    override = descriptor(("ip", "a"))
    override.limit.requests_per_unit = 2
    with pytest.raises(RequestError, match="unknown unit"):
        ask(MemoryStrategy(), override)


def test_a_replaced_rule_is_neither_decided_nor_counted() -> None:
    """The checkout rule replaces per_user for the request carrying both: per_user's
    counter is untouched."""
    strategy = MemoryStrategy()
    _, answer = ask(
        strategy, descriptor(("user", "u")), descriptor(("path", "/checkout"), ("user", "u"))
    )
    assert answer.overall_code == Response.OK
    assert strategy.decided == ["rls:shop|path=/checkout|user=u"]
    assert not answer.statuses[0].HasField("current_limit")


def test_a_shadow_rule_counts_but_never_denies() -> None:
    """A rule in shadow_mode past its limit answers OK; it is left out of the headers."""
    strategy = MemoryStrategy()
    for _ in range(3):
        _, answer = ask(strategy, descriptor(("trial", "t")))
        assert answer.overall_code == Response.OK
        assert answer.statuses[0].code == Response.OK
    assert strategy.used("rls:shop|trial=t", "trial") == 1
    assert headers(answer) == {}


@pytest.mark.parametrize(
    ("domain", "count", "message"),
    [("", 1, "domain"), ("shop", 0, "descriptor list"), ("shop", MAX_DESCRIPTORS + 1, "at most")],
)
def test_requests_without_domain_or_descriptors_or_with_too_many_are_invalid(
    domain: str, count: int, message: str
) -> None:
    """Upstream's two refusals (no domain, no descriptor) and this service's bound."""
    descriptors = [descriptor(("ip", str(i))) for i in range(count)]
    with pytest.raises(RequestError, match=message):
        ask(MemoryStrategy(), *descriptors, domain=domain)


def test_headers_report_the_denying_descriptor_and_retry_when_all_admit() -> None:
    """RateLimit names the descriptor that denied; RateLimit-Policy lists every enforced
    descriptor's limits; Retry-After is the longest wait of the denying ones."""
    strategy = MemoryStrategy()
    ask(strategy, descriptor(("user", "u"), hits=2))
    _, answer = ask(strategy, descriptor(("ip", "a")), descriptor(("user", "u")))
    found = headers(answer)
    assert found["RateLimit-Policy"] == '"per_ip";q=5;w=60, "per_user";q=2;w=3600'
    assert found["RateLimit"].startswith('"per_user";r=0;')
    assert 1 <= int(found["Retry-After"]) <= 3600
