"""A quota too busy to decide in time: the denial it gets, and the causes it is counted by.

Contention is never an admission (that would hand a flooding client more than its limit)
and never a failure of the cluster (the failure mode is for a cluster that does not
answer): it is a 429 ``contended`` that says "try again in a second". Each cause is a
label value of ``ratelimit_contended_total``, so they are listed here once and
:mod:`api.metrics` creates its series from this list.
"""

from __future__ import annotations

import enum

from limiter.policy import Policy
from limiter.policy_rule import PolicyDecision, combine
from limiter.rule import Decision, Reason

__all__ = ["CONTENDED_RETRY_MS", "ContendedCause", "contended", "contended_policy"]

#: A contended denial says "nothing for the next second": contention passes quickly.
CONTENDED_RETRY_MS = 1000


class ContendedCause(enum.StrEnum):
    """Why a request was denied as contended."""

    #: The quota already had ``max_queued_per_key`` requests queued in this worker.
    QUEUE_FULL = "queue_full"
    #: The lock strategy's lock was not free in time.
    LOCK_BUSY = "lock_busy"
    #: A stalled lock holder's fenced write failed (another replica took the lock).
    LOCK_LOST = "lock_lost"
    #: The cas strategy ran out of attempts, or of time, before a write went through.
    CAS_EXHAUSTED = "cas_exhausted"
    #: The request's deadline passed while the cluster kept answering.
    DEADLINE = "deadline"


def contended(limit: int) -> Decision:
    """The denial given when the quota was too busy to decide in time."""
    return Decision(False, limit, 0, CONTENDED_RETRY_MS, Reason.CONTENDED)


def contended_policy(policy: Policy) -> PolicyDecision:
    """The same denial for a whole policy: every limit contended, so the answer reports
    "nothing for a second" whichever limit it names."""
    return combine(policy, [contended(limit.limit) for limit in policy.limits])
