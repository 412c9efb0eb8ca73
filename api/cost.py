"""The ``X-RateLimit-Cost`` header of a guarded request: how much of its client's limit
the request uses.

A whole number from 0 to ``RATELIMIT_MAX_COST``, in plain ASCII decimal digits (no sign,
no space inside, no underscore, no other script's digits); absent means 1. The header
may be repeated only with the same value (a proxy that copies it must not change the
answer). Anything else is refused with a 400 that names the header, before the cluster
is asked. Cost 0 is a peek: the client's usage, counted nowhere
(:meth:`limiter.Strategy.peek`).
"""

from __future__ import annotations

import re
from typing import Any

from api.errors import InvalidHeader

__all__ = ["COST_HEADER", "DEFAULT_COST", "GATEWAY_HEADER", "request_cost"]

COST_HEADER = "X-RateLimit-Cost"
DEFAULT_COST = 1
#: Set by nginx on gateway mode's auth subrequest. Behind the gateway the request goes on
#: to the app once admitted, so a peek (cost 0) would let it through uncounted: there a
#: cost of 0 is refused like a malformed one. A caller who sends it elsewhere only takes
#: peeks away from itself.
GATEWAY_HEADER = "X-RateLimit-Gateway"
#: At most this many digits are read (leading zeros included), so no huge string is
#: ever turned into a number.
MAX_DIGITS = 20
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")


def request_cost(headers: Any, max_cost: int) -> int:
    """The request's cost from its headers (Sanic's multi-valued ``Header``), or
    :class:`InvalidHeader` naming ``X-RateLimit-Cost`` (a peek through the gateway
    included)."""
    values = headers.getall(COST_HEADER, None)
    if not values:
        return DEFAULT_COST
    first = values[0].strip(" \t")
    if any(value.strip(" \t") != first for value in values[1:]):
        raise InvalidHeader(COST_HEADER, "repeated with different values")
    if _DIGITS.fullmatch(first) is None:
        raise InvalidHeader(COST_HEADER, f"must be a whole number from 0 to {max_cost}")
    cost = int(first)
    if cost > max_cost:
        raise InvalidHeader(COST_HEADER, f"must be at most {max_cost}")
    if cost == 0 and GATEWAY_HEADER in headers:
        raise InvalidHeader(COST_HEADER, "0 (a peek) cannot pass the gateway: it counts nothing")
    return cost
