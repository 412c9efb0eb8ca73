"""Exhausted windows a worker remembers, so that a flood past the limit costs no cluster call.

An exhausted window stays exhausted until it ends: counts only grow within a window, and
a window of the same limit and length cannot make room again. So once a decision reports
``remaining == 0``, every later request for the same client, limit and window length is
denied until the window ends, and the worker can say so itself.

The entry is keyed by the client's limit, window length and alignment as well as its id
(a :class:`limiter.quota.Quota`): a PATCH that changes any of them makes the next request
miss the cache and go to the cluster at once (a cache keyed by client alone would keep
denying a client whose limit was just raised).
A DELETE needs nothing here: the registry lookup before the cache answers 404.

Expiry is measured from the decision's ``reset_after_ms`` on the local clock, starting
from when the operation was *sent*, so an entry never outlives its window (it may end a
round trip early, and that request then simply asks the cluster). The rest of the window
a denial reports (``Retry-After``, ``RateLimit``) is counted from when the answer
*arrived* instead: the member measured it somewhere between the two, so that count never
points before the window's end (it may overshoot by a round trip). The size is bounded;
the oldest entries go first.
"""

from __future__ import annotations

from collections import OrderedDict

from limiter.quota import Quota
from limiter.rule import Decision, Reason

__all__ = ["DenyCache"]


class DenyCache:
    """Up to ``size`` exhausted windows, each until its end in local milliseconds."""

    def __init__(self, size: int) -> None:
        self.size = size
        #: quota -> (deny until, window end to report), both in local milliseconds.
        self._ends: OrderedDict[Quota, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ends)

    def remember(
        self, quota: Quota, deny_until_ms: int, reported_end_ms: int | None = None
    ) -> None:
        """Denies ``quota`` until ``deny_until_ms``; denials report the window ending at
        ``reported_end_ms`` (default: the same instant)."""
        reported = deny_until_ms if reported_end_ms is None else reported_end_ms
        self._ends[quota] = (deny_until_ms, max(reported, deny_until_ms))
        self._ends.move_to_end(quota)
        while len(self._ends) > self.size:
            self._ends.popitem(last=False)

    def denial(self, quota: Quota, cost: int, now_ms: int) -> Decision | None:
        """The decision the cluster would give now, if the window is known to be full."""
        entry = self._ends.get(quota)
        if entry is None:
            return None
        deny_until, reported_end = entry
        if now_ms >= deny_until:
            del self._ends[quota]
            return None
        limit = quota.limit
        reason = Reason.COST_OVER_LIMIT if cost > limit else Reason.LIMIT_REACHED
        return Decision(False, limit, 0, reported_end - now_ms, reason)
