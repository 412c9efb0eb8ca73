"""A client record, the one shape of a client (stored as JSON in the registry's map,
shown by the management routes), and the canonical form of a client id.

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

from limiter import Alignment

__all__ = ["CANONICAL_ID", "ClientRecord", "parse_client_id"]

#: A client id as the service writes it (``str(uuid.UUID(...))``): lower case, hyphenated.
CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclasses.dataclass(frozen=True)
class ClientRecord:
    """A client as the registry stores it and the management routes show it (the one
    shape of a record: the OpenAPI document describes this class too)."""

    id: str
    name: str
    limit: int
    window_seconds: int
    created_at: str
    window_alignment: Alignment

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ClientRecord:
        return _parsed_record(text)

    def as_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["window_alignment"] = self.window_alignment.value
        return fields


@functools.lru_cache(maxsize=4096)
def _parsed_record(text: str) -> ClientRecord:
    """Records are immutable and the same text arrives on every request of a client: parse
    each text once (the guarded route's hottest line after the network). A record written
    before alignments existed has none and is read as ``clock``, what it counted in."""
    fields = json.loads(text)
    fields["window_alignment"] = Alignment(fields.get("window_alignment", Alignment.CLOCK))
    return ClientRecord(**fields)


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
