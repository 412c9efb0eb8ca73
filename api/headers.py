"""Rate-limit response headers.

The standard pair follows draft-ietf-httpapi-ratelimit-headers-11 (May 2026; the syntax
is unchanged since -08): both fields are Structured Field Lists whose items name a quota
policy (a String) with parameters::

    RateLimit-Policy: "burst";q=2;w=60;burst=0, "daily";q=1000;w=86400
    RateLimit: "daily";r=42;t=17               r left, for the next t seconds

``RateLimit-Policy`` lists every *enforced* limit of the client, in its policy's order:
quota ``q`` per window of ``w`` seconds (for a ``gcra`` limit, its limit per window, the
steady rate, with the extension parameter ``burst``: the draft lets a policy item carry
other parameters, which a client that does not know them ignores). Shadow limits are
left out: they never deny, so a client must not shape its traffic on them.

``RateLimit`` reports one limit, the one closest to denying (the one that denied, on a
denial; see :mod:`limiter.policy_rule`): a client that respects it respects them all, and
one item keeps the answer short. Beside them, the legacy fields that most clients still
read, for that same limit: ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (seconds until its reset, like ``t``; not a timestamp).

A client of one limit (the single form: one fixed window named ``default``) gets
``"default";q=100;w=60`` and ``"default";r=42;t=17``, as before lists of limits existed.

A 429 adds ``Retry-After`` in seconds, rounded up: when every enforced limit admits the
request again (so a client that waits that long is not denied by another limit at once;
for one fixed window, the window's end). It is 1 s when the key was too busy to decide
in time: that passes in a moment; such a denial reports ``r=0;t=1``, "nothing for a
second". A request whose ``X-RateLimit-Cost`` is above a limit (reason
``COST_OVER_LIMIT``) gets no ``Retry-After``: waiting never lets it pass (RFC 9110 makes
the field optional on a 429); ``RateLimit`` still reports that limit as it is.

``X-RateLimit-Shadow-Denied`` lists, as a Structured Field List of Strings, the shadow
limits that would have denied a decided request (``"trial"``), and is absent when none
would have. It is the service's own field, so it takes the ``X-RateLimit-`` prefix of
its other own fields (``X-RateLimit-Cost``, ``X-RateLimit-Degraded``) and leaves the
``RateLimit-`` names to the draft.

When no decision could be had and the request was admitted anyway (fail open), or
refused with a 503 (fail closed), ``X-RateLimit-Degraded`` carries the reason
(``unavailable`` or ``timeout``): only when the cluster cannot be reached. Such an answer
carries ``RateLimit-Policy`` and the first enforced limit's ``X-RateLimit-Limit``.

Every value is built from integers and limit names, which :data:`limiter.policy.NAME_PATTERN`
keeps to ``[a-z0-9_-]``: valid inside a Structured Field String, and free of anything
a header must not hold.
"""

from __future__ import annotations

import functools

from limiter import Algorithm, Limit, Policy, PolicyDecision, Reason

__all__ = [
    "DEGRADED",
    "POLICY_NAME",
    "SHADOW_DENIED",
    "decision_headers",
    "policy_field",
    "policy_headers",
    "rate_limit_item",
    "retry_after_seconds",
]

#: The name of a single-form client's one limit (:data:`limiter.policy.DEFAULT_NAME`).
POLICY_NAME = "default"
DEGRADED = "X-RateLimit-Degraded"
SHADOW_DENIED = "X-RateLimit-Shadow-Denied"


def _policy_item(limit: Limit) -> str:
    item = f'"{limit.name}";q={limit.limit};w={limit.window_seconds}'
    if limit.algorithm is Algorithm.GCRA:
        item += f";burst={limit.burst}"
    return item


@functools.lru_cache(maxsize=4096)
def policy_field(policy: Policy) -> str:
    """``RateLimit-Policy`` of a policy: the same on every answer to its client, so built
    once (a policy's hash is worked out when it is made)."""
    return ", ".join(_policy_item(limit) for limit in policy.limits if limit.enforced)


@functools.lru_cache(maxsize=4096)
def _first_enforced(policy: Policy) -> Limit:
    return next(limit for limit in policy.limits if limit.enforced)


def policy_headers(policy: Policy) -> dict[str, str]:
    """What is known without a decision: the client's policy (and, for the legacy field,
    its first enforced limit)."""
    return {
        "RateLimit-Policy": policy_field(policy),
        "X-RateLimit-Limit": str(_first_enforced(policy).limit),
    }


def rate_limit_item(policy: Policy, decision: PolicyDecision) -> str:
    """The ``RateLimit`` item of a decision: its closest limit, what is left and for how
    many seconds."""
    closest = decision.decisions[decision.closest]
    name = policy.limits[decision.closest].name
    return f'"{name}";r={closest.remaining};t={closest.reset_after_seconds}'


def retry_after_seconds(decision: PolicyDecision) -> int | None:
    """``Retry-After`` of a denial: 1 s for a busy key, when every enforced limit admits
    again otherwise; ``None`` for an admission and for a cost above a limit (waiting never
    helps)."""
    if decision.allowed or decision.reason == Reason.COST_OVER_LIMIT:
        return None
    # Contention on a key passes in a moment; a full limit does not.
    if decision.reason == Reason.CONTENDED:
        return 1
    wait = decision.retry_after_ms
    if wait is None:
        return decision.decisions[decision.closest].reset_after_seconds
    return -(-wait // 1000)


def decision_headers(policy: Policy, decision: PolicyDecision) -> dict[str, str]:
    """Every rate-limit header of one decided request (``Retry-After`` when denied,
    :data:`SHADOW_DENIED` when a shadow limit would have denied)."""
    closest = decision.decisions[decision.closest]
    reset = closest.reset_after_seconds
    headers = {
        "RateLimit-Policy": policy_field(policy),
        "X-RateLimit-Limit": str(closest.limit),
        "RateLimit": rate_limit_item(policy, decision),
        "X-RateLimit-Remaining": str(closest.remaining),
        "X-RateLimit-Reset": str(reset),
    }
    retry = retry_after_seconds(decision)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    if decision.shadow_denied and decision.reason != Reason.CONTENDED:
        headers[SHADOW_DENIED] = ", ".join(
            f'"{policy.limits[i].name}"' for i in decision.shadow_denied
        )
    return headers
