"""Rate-limit headers of a decision."""

from __future__ import annotations

from api.headers import decision_headers
from limiter import Decision, Reason


def test_admitted_request_carries_policy_and_state_without_retry_after() -> None:
    """An admitted request gets both standard fields and the legacy trio, no Retry-After."""
    headers = decision_headers(Decision(True, 100, 42, 16_001, Reason.ADMITTED), 60)
    assert headers == {
        "RateLimit-Policy": '"default";q=100;w=60',
        "X-RateLimit-Limit": "100",
        "RateLimit": '"default";r=42;t=17',
        "X-RateLimit-Remaining": "42",
        "X-RateLimit-Reset": "17",
    }


def test_denied_request_retries_no_earlier_than_the_window_end() -> None:
    """Over the limit: Retry-After is the time to the window's end, rounded up."""
    headers = decision_headers(Decision(False, 5, 0, 2_001, Reason.LIMIT_REACHED), 60)
    assert headers["Retry-After"] == "3"
    assert headers["X-RateLimit-Remaining"] == "0"


def test_contended_request_retries_in_a_second() -> None:
    """A denial because the key was too busy says retry in 1 s, not at the window's end."""
    headers = decision_headers(Decision(False, 5, 3, 50_000, Reason.CONTENDED), 60)
    assert headers["Retry-After"] == "1"


def test_a_cost_above_the_limit_gets_no_retry_after() -> None:
    """A request that can never pass (cost above the limit) reports the window's state
    but no Retry-After: waiting would not help."""
    headers = decision_headers(Decision(False, 5, 3, 50_000, Reason.COST_OVER_LIMIT), 60)
    assert "Retry-After" not in headers
    assert headers["RateLimit"] == '"default";r=3;t=50'
