"""Exhausted quotas a worker remembers, so that a flood past the limit costs no cluster call.

A fixed window that is exhausted stays exhausted until it ends: counts only grow within a
window, and a window of the same limit and length cannot make room again. So once a
decision reports ``remaining == 0`` for an enforced fixed-window limit of a policy, every
later request of the same quota is denied until that window ends, and the worker can say
so itself. Sliding windows and GCRA make room again as time passes (the previous window's
weight decays, the TAT falls behind), so only fixed-window limits are remembered: the
cache never denies a request the cluster would admit.

The entry is keyed by the :class:`limiter.quota.Quota` (client and whole policy): a PATCH
that changes any limit makes the next request miss the cache and go to the cluster at
once (a cache keyed by client alone would keep denying a client whose limit was just
raised). A DELETE needs nothing here: the registry lookup before the cache answers 404.

Expiry is measured from the decision's ``reset_after_ms`` on the local clock, starting
from when the operation was *sent*, so an entry never outlives its window (it may end a
round trip early, and that request then simply asks the cluster). The rest of the window
a denial reports (``Retry-After``, ``RateLimit``) is counted from when the answer
*arrived* instead: the member measured it somewhere between the two, so that count never
points before the window's end (it may overshoot by a round trip). The other limits of a
cached denial report what the last decision said of them, their times shortened by the
time since, as usage only: the denial, its reason and its ``Retry-After`` are the
exhausted window's. The size is
bounded; the oldest entries go first. A refund (counts given back) reopens a window, so
the strategy makes the cache forget the quota (:meth:`DenyCache.forget`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import NamedTuple

from limiter.policy import Algorithm, Policy
from limiter.policy_rule import PolicyDecision, combine
from limiter.quota import Quota
from limiter.rule import Decision, Reason

__all__ = ["DenyCache", "exhausted_window"]


class _Entry(NamedTuple):
    #: Local milliseconds: deny until then, and report the window as ending then.
    deny_until_ms: int
    reported_end_ms: int
    #: The exhausted limit's index in the policy.
    limit_index: int
    #: The decision that exhausted it, and when it arrived (local milliseconds).
    last: PolicyDecision | None
    answered_at_ms: int


@functools.lru_cache(maxsize=4096)
def _enforced_fixed_windows(policy: Policy) -> tuple[int, ...]:
    return tuple(
        i
        for i, limit in enumerate(policy.limits)
        if limit.algorithm is Algorithm.FIXED_WINDOW and not limit.shadow
    )


def exhausted_window(quota: Quota, decision: PolicyDecision) -> int | None:
    """The enforced fixed-window limit that ``decision`` left exhausted (the one whose
    window ends last, when several are), or None."""
    found: int | None = None
    decisions = decision.decisions
    for i in _enforced_fixed_windows(quota.policy):
        d = decisions[i]
        if (
            d.remaining == 0
            and d.reason is not Reason.CONTENDED
            and (found is None or d.reset_after_ms > decisions[found].reset_after_ms)
        ):
            found = i
    return found


def _aged(decision: Decision, elapsed_ms: int) -> Decision:
    """Another limit's last answer, as usage only: its times shortened by ``elapsed_ms``
    and no verdict of its own (what it said of another request's cost says nothing of
    this one's), so the denial is the exhausted window's alone."""
    return Decision(
        True,
        decision.limit,
        decision.remaining,
        max(0, decision.reset_after_ms - elapsed_ms),
        Reason.ADMITTED,
    )


class DenyCache:
    """Up to ``size`` exhausted quotas, each until its window's end in local milliseconds."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Quota, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(
        self,
        quota: Quota,
        deny_until_ms: int,
        reported_end_ms: int | None = None,
        *,
        index: int = 0,
        last: PolicyDecision | None = None,
        answered_at_ms: int = 0,
    ) -> None:
        """Denies ``quota`` until ``deny_until_ms`` because its limit ``index`` is
        exhausted; denials report that window ending at ``reported_end_ms`` (default: the
        same instant) and the other limits as ``last`` (answered at ``answered_at_ms``)
        left them."""
        reported = deny_until_ms if reported_end_ms is None else reported_end_ms
        self._entries[quota] = _Entry(
            deny_until_ms, max(reported, deny_until_ms), index, last, answered_at_ms
        )
        self._entries.move_to_end(quota)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def remember_decision(
        self, quota: Quota, decision: PolicyDecision, sent_at_ms: int, answered_at_ms: int
    ) -> None:
        """Remembers ``quota`` if ``decision`` (sent and answered at those local times)
        left one of its enforced fixed windows exhausted."""
        index = exhausted_window(quota, decision)
        if index is None:
            return
        reset = decision.decisions[index].reset_after_ms
        self.remember(
            quota,
            sent_at_ms + reset,
            answered_at_ms + reset,
            index=index,
            last=decision,
            answered_at_ms=answered_at_ms,
        )

    def forget(self, quota: Quota) -> None:
        """Drops what is known of ``quota``: a refund gave back some of what it counted,
        so a window remembered as exhausted may have room again."""
        self._entries.pop(quota, None)

    def denial(self, quota: Quota, cost: int, now_ms: int) -> PolicyDecision | None:
        """The decision the cluster would give now, if an exhausted window is known."""
        entry = self._entries.get(quota)
        if entry is None:
            return None
        if now_ms >= entry.deny_until_ms:
            del self._entries[quota]
            return None
        limits = quota.policy.limits
        exhausted = limits[entry.limit_index].limit
        reason = Reason.COST_OVER_LIMIT if cost > exhausted else Reason.LIMIT_REACHED
        decisions = []
        for i, limit in enumerate(limits):
            if i == entry.limit_index:
                decisions.append(
                    Decision(False, exhausted, 0, entry.reported_end_ms - now_ms, reason)
                )
            elif entry.last is not None:
                decisions.append(_aged(entry.last.decisions[i], now_ms - entry.answered_at_ms))
            else:
                decisions.append(Decision(True, limit.limit, limit.limit, 0, Reason.ADMITTED))
        return combine(quota.policy, decisions)
