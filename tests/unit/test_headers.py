"""Rate-limit headers of a decision."""

from __future__ import annotations

import http_sfv
import pytest

from api.headers import SHADOW_DENIED, decision_headers, policy_headers
from limiter import Algorithm, Alignment, Decision, Limit, Policy, PolicyDecision, Reason
from limiter.contention import contended_policy
from limiter.policy_rule import combine, decide

ONE = Policy.single(100, 60)
FIVE = Policy.single(5, 60)
#: A burst limit, a daily quota and a shadow limit on trial.
THREE = Policy(
    (
        Limit("burst", Algorithm.GCRA, 2, 60, burst=1),
        Limit("daily", Algorithm.FIXED_WINDOW, 5, 86400, Alignment.CLOCK),
        Limit("trial", Algorithm.SLIDING_WINDOW, 1, 60, shadow=True),
    )
)
LIST_FIELDS = ("RateLimit-Policy", "RateLimit", SHADOW_DENIED)


def _one(decision: Decision, policy: Policy = ONE) -> dict[str, str]:
    return decision_headers(policy, combine(policy, [decision]))


def _parsed(value: str) -> list[tuple[str, dict[str, object]]]:
    """A header value as a Structured Fields list: each item's value and parameters."""
    field = http_sfv.List()
    field.parse(value.encode())
    return [(item.value, dict(item.params)) for item in field]


def test_admitted_request_carries_policy_and_state_without_retry_after() -> None:
    """An admitted request gets both standard fields and the legacy trio, no Retry-After."""
    headers = _one(Decision(True, 100, 42, 16_001, Reason.ADMITTED))
    assert headers == {
        "RateLimit-Policy": '"default";q=100;w=60',
        "X-RateLimit-Limit": "100",
        "RateLimit": '"default";r=42;t=17',
        "X-RateLimit-Remaining": "42",
        "X-RateLimit-Reset": "17",
    }


def test_denied_request_retries_no_earlier_than_the_window_end() -> None:
    """Over the limit: Retry-After is the time to the window's end, rounded up."""
    headers = _one(Decision(False, 5, 0, 2_001, Reason.LIMIT_REACHED), FIVE)
    assert headers["Retry-After"] == "3"
    assert headers["X-RateLimit-Remaining"] == "0"


def test_contended_request_retries_in_a_second() -> None:
    """A denial because the key was too busy says retry in 1 s, not at the window's end."""
    headers = _one(Decision(False, 5, 3, 50_000, Reason.CONTENDED), FIVE)
    assert headers["Retry-After"] == "1"


def test_a_cost_above_the_limit_gets_no_retry_after() -> None:
    """A request that can never pass (cost above the limit) reports the window's state
    but no Retry-After: waiting would not help."""
    headers = _one(Decision(False, 5, 3, 50_000, Reason.COST_OVER_LIMIT), FIVE)
    assert "Retry-After" not in headers
    assert headers["RateLimit"] == '"default";r=3;t=50'


def test_the_policy_lists_every_enforced_limit_in_order_and_no_shadow_one() -> None:
    """RateLimit-Policy names each enforced limit with q and w (gcra adds burst), in the
    policy's order; the shadow limit is not in it."""
    _, answer = decide([None, None, None], 1_000_000, 1, THREE)
    headers = decision_headers(THREE, answer)
    assert headers["RateLimit-Policy"] == '"burst";q=2;w=60;burst=1, "daily";q=5;w=86400'
    assert _parsed(headers["RateLimit-Policy"]) == [
        ("burst", {"q": 2, "w": 60, "burst": 1}),
        ("daily", {"q": 5, "w": 86400}),
    ]


def test_ratelimit_reports_the_closest_limit() -> None:
    """RateLimit and the legacy trio describe the limit closest to denying: after one
    request, the gcra limit of 2 (1 left, a half) rather than the daily 5 (4 left)."""
    _, answer = decide([None, None, None], 1_000_000, 1, THREE)
    headers = decision_headers(THREE, answer)
    closest = answer.decisions[0]
    assert answer.closest == 0
    assert headers["RateLimit"] == f'"burst";r=1;t={closest.reset_after_seconds}'
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("2", "1")


def test_a_denial_retries_when_every_enforced_limit_admits() -> None:
    """A 429's Retry-After is the policy's retry time rounded up, which may be later than
    the reset of the limit RateLimit reports."""
    decisions = [
        Decision(False, 2, 0, 30_000, Reason.LIMIT_REACHED, 1_500),
        Decision(False, 5, 0, 7_200_000, Reason.LIMIT_REACHED),
        Decision(True, 1, 1, 0, Reason.ADMITTED),
    ]
    answer = combine(THREE, decisions)
    headers = decision_headers(THREE, answer)
    assert answer.retry_after_ms == 7_200_000 and answer.closest == 1
    assert headers["Retry-After"] == "7200"
    assert headers["RateLimit"] == '"daily";r=0;t=7200'


def test_shadow_denials_are_listed_only_when_there_are_some() -> None:
    """The shadow field lists the shadow limits that would have denied, as sf strings,
    and is absent otherwise (and on a contended denial, which decided nothing)."""
    state, first = decide([None, None, None], 1_000_000, 1, THREE)
    assert SHADOW_DENIED not in decision_headers(THREE, first)
    _, second = decide(state, 1_000_001, 1, THREE)
    assert second.allowed and second.shadow_denied == (2,)
    headers = decision_headers(THREE, second)
    assert headers[SHADOW_DENIED] == '"trial"'
    assert _parsed(headers[SHADOW_DENIED]) == [("trial", {})]
    assert SHADOW_DENIED not in decision_headers(THREE, contended_policy(THREE))


def test_without_a_decision_the_policy_and_first_enforced_limit_are_known() -> None:
    """Failing open or closed, the answer still names the policy and a limit."""
    shadow_first = Policy((THREE.limits[2], THREE.limits[1]))
    assert policy_headers(shadow_first) == {
        "RateLimit-Policy": '"daily";q=5;w=86400',
        "X-RateLimit-Limit": "5",
    }


def _answers() -> list[tuple[Policy, PolicyDecision]]:
    states: tuple[object, ...] = (None, None, None)
    answers = []
    for now in range(1_000_000, 1_000_010):
        states, answer = decide(states, now, 1, THREE)  # type: ignore[arg-type]
        answers.append((THREE, answer))
    answers.append((THREE, contended_policy(THREE)))
    answers.append((ONE, combine(ONE, [Decision(False, 100, 0, 1, Reason.COST_OVER_LIMIT)])))
    return answers


@pytest.mark.parametrize(("policy", "answer"), _answers())
def test_every_list_header_parses_as_a_structured_fields_list(
    policy: Policy, answer: PolicyDecision
) -> None:
    """RateLimit-Policy, RateLimit and the shadow field parse as sf lists of strings with
    integer parameters, and the numeric fields are plain non-negative integers."""
    headers = decision_headers(policy, answer)
    for name in LIST_FIELDS:
        if name in headers:
            for value, params in _parsed(headers[name]):
                assert isinstance(value, str)
                assert all(isinstance(p, int) and p >= 0 for p in params.values())
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"):
        if name in headers:
            assert headers[name].isdigit()
