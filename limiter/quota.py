"""The quota: what one request asks a strategy about, under one name everywhere.

A quota is one client's policy as a request carries it (the client and its list of
limits). The deny cache remembers exhausted quotas, the lanes count queued requests per
quota, and a strategy decides a quota's batch of requests in one atomic step. A *lane*
(:mod:`limiter.lanes`) is something else: the queue that one cluster operation serves,
which holds one quota for lock and cas and many for the entry processor's shards.
"""

from __future__ import annotations

from typing import NamedTuple

from limiter.policy import Policy
from limiter.rule import Alignment

__all__ = ["Quota"]


class Quota(NamedTuple):
    """One client's policy as a request asks for it: the requests that one cluster
    operation can decide together, and the key of the deny cache. A PATCH that changes
    any limit starts a new quota (and so never meets a stale denial)."""

    client_id: str
    policy: Policy

    @classmethod
    def single(
        cls, client_id: str, limit: int, window_seconds: int, alignment: Alignment = Alignment.CLOCK
    ) -> Quota:
        """The quota of a client with one fixed-window limit (the single form)."""
        return cls(client_id, Policy.single(limit, window_seconds, alignment))
