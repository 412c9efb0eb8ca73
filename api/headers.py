"""Rate-limit response headers.

The standard pair follows draft-ietf-httpapi-ratelimit-headers-11 (May 2026; the syntax
is unchanged since -08): both fields are Structured Field Lists whose items name a quota
policy (a String) with parameters::

    RateLimit-Policy: "default";q=100;w=60     quota q per window of w seconds
    RateLimit: "default";r=42;t=17             r left, for the next t seconds

Every client has exactly one policy, named ``default``. Beside them, the legacy fields
that most clients still read: ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (seconds until the window ends, like ``t``; not a timestamp). A 429
adds ``Retry-After`` in seconds, rounded up, so a client that waits that long never
retries before the window has ended (1 s when the key was too busy to decide in time:
that passes in a moment; such a denial reports ``r=0;t=1``, "nothing for a second").
A request whose ``X-RateLimit-Cost`` is above its client's limit (reason
``COST_OVER_LIMIT``) gets no ``Retry-After``: waiting never lets it pass (RFC 9110 makes
the field optional on a 429); ``RateLimit`` still reports the window as it is.

When no decision could be had and the request was admitted anyway (fail open), or
refused with a 503 (fail closed), ``X-RateLimit-Degraded`` carries the reason
(``unavailable`` or ``timeout``): only when the cluster cannot be reached.
"""

from __future__ import annotations

from limiter import Decision, Reason

__all__ = ["DEGRADED", "POLICY_NAME", "decision_headers", "policy_headers"]

POLICY_NAME = "default"
DEGRADED = "X-RateLimit-Degraded"


def policy_headers(limit: int, window_seconds: int) -> dict[str, str]:
    """What is known without a decision: the client's policy."""
    return {
        "RateLimit-Policy": f'"{POLICY_NAME}";q={limit};w={window_seconds}',
        "X-RateLimit-Limit": str(limit),
    }


def decision_headers(decision: Decision, window_seconds: int) -> dict[str, str]:
    """Every rate-limit header of one decided request (``Retry-After`` when denied)."""
    reset = decision.reset_after_seconds
    headers = {
        **policy_headers(decision.limit, window_seconds),
        "RateLimit": f'"{POLICY_NAME}";r={decision.remaining};t={reset}',
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(reset),
    }
    if not decision.allowed and decision.reason != Reason.COST_OVER_LIMIT:
        # Contention on a key passes in a moment; a full window does not.
        contended = decision.reason == Reason.CONTENDED
        headers["Retry-After"] = "1" if contended else str(reset)
    return headers
