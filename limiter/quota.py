"""The quota: what one request asks a strategy about, under one name everywhere.

A quota is one client's rule as a request carries it (client, limit, window length,
alignment). The deny cache remembers exhausted quotas, the lanes count queued requests
per quota, and a strategy decides a quota's batch of requests in one atomic step. A
*lane* (:mod:`limiter.lanes`) is something else: the queue that one cluster operation
serves, which holds one quota for lock and cas and many for the entry processor's shards.
"""

from __future__ import annotations

from typing import NamedTuple

from limiter.rule import Alignment

__all__ = ["Quota"]


class Quota(NamedTuple):
    """One client's rule as a request asks for it: the requests that one cluster operation
    can decide together, and the key of the deny cache. A PATCH that changes the limit,
    the window or the alignment starts a new quota (and so never meets a stale denial)."""

    client_id: str
    limit: int
    window_seconds: int
    alignment: Alignment
