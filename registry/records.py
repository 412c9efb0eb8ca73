"""A client record, the one shape of a client (stored as JSON in the registry's map,
shown by the management routes), and the canonical form of a client id.

A client's limits are its :class:`limiter.Policy`. The JSON lists them under ``limits``
and also keeps the single form's top-level ``limit``, ``window_seconds`` and
``window_alignment``: the first limit, for clients of the single form (and for any reader
written before policies existed). When the first limit is not a fixed window,
``window_alignment`` is ``null``: alignment belongs to fixed windows only (a sliding
window is always clock-aligned, a GCRA limit has no window at all), and ``null`` says so
rather than naming an alignment that does not apply.

A record stored before policies existed has only the top-level fields and reads as
:meth:`limiter.Policy.single` (one fixed-window limit named ``default``); one stored
before alignments existed has no ``window_alignment`` and reads as ``clock``, what it
counted in. Such a record is written in the new shape at its next change.

Both are parsed on every guarded request, so each parse is cached: records are immutable
and the same text arrives on every request of a client.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import uuid
from typing import Any

from limiter import Algorithm, Alignment, Limit, Policy

__all__ = ["CANONICAL_ID", "ClientRecord", "limit_as_dict", "limit_from_dict", "parse_client_id"]

#: A client id as the service writes it (``str(uuid.UUID(...))``): lower case, hyphenated.
CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclasses.dataclass(frozen=True)
class ClientRecord:
    """A client as the registry stores it and the management routes show it."""

    id: str
    name: str
    created_at: str
    policy: Policy

    @property
    def first(self) -> Limit:
        """The first limit: the one the single form's top-level fields describe."""
        return self.policy.limits[0]

    @property
    def limit(self) -> int:
        return self.first.limit

    @property
    def window_seconds(self) -> int:
        return self.first.window_seconds

    @property
    def window_alignment(self) -> Alignment | None:
        """The first limit's alignment; None when it is not a fixed window."""
        return self.first.alignment

    @property
    def single_form(self) -> bool:
        """Whether the single form describes the whole policy (one fixed-window limit):
        then a change of ``limit``, ``window_seconds`` or ``window_alignment`` alone is
        unambiguous."""
        return len(self.policy) == 1 and self.first.algorithm is Algorithm.FIXED_WINDOW

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ClientRecord:
        return _parsed_record(text)

    def as_dict(self) -> dict[str, Any]:
        alignment = self.window_alignment
        return {
            "id": self.id,
            "name": self.name,
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "created_at": self.created_at,
            "window_alignment": None if alignment is None else alignment.value,
            "limits": [limit_as_dict(limit) for limit in self.policy.limits],
        }


def limit_as_dict(limit: Limit) -> dict[str, Any]:
    """One limit as the JSON shows it: ``window_alignment`` for a fixed window only,
    ``burst`` for GCRA only, as the API accepts them."""
    shown: dict[str, Any] = {
        "name": limit.name,
        "algorithm": limit.algorithm.value,
        "limit": limit.limit,
        "window_seconds": limit.window_seconds,
    }
    if limit.alignment is not None:
        shown["window_alignment"] = limit.alignment.value
    if limit.algorithm is Algorithm.GCRA:
        shown["burst"] = limit.burst
    shown["shadow"] = limit.shadow
    return shown


def limit_from_dict(fields: dict[str, Any]) -> Limit:
    """A limit as :func:`limit_as_dict` wrote it (trusted: the API checked it first)."""
    alignment = fields.get("window_alignment")
    return Limit(
        fields["name"],
        Algorithm(fields["algorithm"]),
        fields["limit"],
        fields["window_seconds"],
        None if alignment is None else Alignment(alignment),
        fields.get("burst", 0),
        fields.get("shadow", False),
    )


@functools.lru_cache(maxsize=4096)
def _parsed_record(text: str) -> ClientRecord:
    """Records are immutable and the same text arrives on every request of a client: parse
    each text once (the guarded route's hottest line after the network)."""
    fields = json.loads(text)
    if "limits" in fields:
        policy = Policy(tuple(limit_from_dict(limit) for limit in fields["limits"]))
    else:
        alignment = Alignment(fields.get("window_alignment") or Alignment.CLOCK)
        policy = Policy.single(fields["limit"], fields["window_seconds"], alignment)
    return ClientRecord(fields["id"], fields["name"], fields["created_at"], policy)


@functools.lru_cache(maxsize=4096)
def parse_client_id(raw: str) -> str | None:
    """The canonical form of a client id, or None when ``raw`` is no UUID at all.

    Any spelling ``uuid.UUID`` accepts (upper case, braces, no hyphens) names the same
    client, so one client never gets two counters.
    """
    if len(raw) > 64:
        return None
    if CANONICAL_ID.fullmatch(raw):
        # What the parse below would give back (every request names its client).
        return raw
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None
