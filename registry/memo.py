"""Each worker's memo of the records it has read, and the rules for when it may be trusted.

The guarded route reads a record on every request, so a worker keeps the records it has
read in a plain dict in front of the near cache (a near-cache hit still costs a key
serialisation and a proxy call). A memo that missed a change would go on admitting by
an old limit, so it is served only while two sources would have told it of every change
(see :mod:`registry.changes` for both):

- the entry listener is registered on a connection to every member
  (``listening_everywhere(registration)``), since events are lost around a change of the
  connections, each of which calls :meth:`Memo.distrust`;
- the change log's position is known and the log was read to its end within the last
  :data:`LOG_TRUST_POLLS` polls.

A read is kept only if it began while both held and nothing changed during it
(:attr:`Memo.events` did not move). ``ttl_seconds`` bounds what both sources can miss at
once: a writer that stopped between its write and its log entry while a member dropped
that write's event. A hit does not extend it.
"""

from __future__ import annotations

from collections.abc import Callable

from registry.records import ClientRecord

__all__ = ["LOG_TRUST_POLLS", "Memo"]

#: The memo is served for this many log polls after the change log was last read to its
#: end: a poll that fails or hangs stops it soon, never a change left unseen for long.
LOG_TRUST_POLLS = 5


class Memo:
    """Records (or tombstones) by client id, each with the monotonic time it expires."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        size: int,
        log_poll_seconds: float,
        listening_everywhere: Callable[[str], bool],
        clock: Callable[[], float],
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.size = size
        #: How long the memo is served after the log was last read to its end.
        self.log_trust_seconds = LOG_TRUST_POLLS * log_poll_seconds
        self._listening_everywhere = listening_everywhere
        self._clock = clock
        self._records: dict[str, tuple[ClientRecord | None, float]] = {}
        #: Moves on every change seen (event, log entry, own write) and every distrust: a
        #: read during which it moved is not kept.
        self.events = 0
        #: The entry listener's registration, once it is registered.
        self.registration: str | None = None
        #: The next log entry to read; None until the log is joined (and after distrust).
        self.log_position: int | None = None
        #: The memo is served until then (monotonic): a while after the log's last full read.
        self.served_until = 0.0

    def trusted(self) -> bool:
        """Whether every member would tell this worker of a change now, and the log
        position is known (a read begun now is kept)."""
        return (
            self.registration is not None
            and self.log_position is not None
            and self._listening_everywhere(self.registration)
        )

    def keeps_reads(self) -> bool:
        """Whether a read begun now may be kept: trusted, and the memo being served."""
        return self.trusted() and self._clock() <= self.served_until

    def remembered(self, client_id: str) -> tuple[bool, ClientRecord | None]:
        """``(True, record or None)`` when the memo knows the id, without any await."""
        entry = self._records.get(client_id)
        if entry is None:
            return False, None
        now = self._clock()
        if entry[1] < now or self.served_until < now:
            return False, None
        return True, entry[0]

    def remember(self, client_id: str, record: ClientRecord | None) -> None:
        """Keeps ``record`` (None: the client is gone) as the newest entry."""
        self._records.pop(client_id, None)
        self._records[client_id] = (record, self._clock() + self.ttl_seconds)
        if len(self._records) > self.size:
            del self._records[next(iter(self._records))]

    def forget(self, client_id: str) -> None:
        self._records.pop(client_id, None)

    def changed(self, client_id: str, record: ClientRecord | None) -> None:
        """A change event's news of ``client_id``: its record now, or None when removed."""
        self.events += 1
        if not self.trusted():
            # A later event for this key might be lost yet: read it again instead.
            self._records.pop(client_id, None)
            return
        if record is None and client_id not in self._records:
            return
        self.remember(client_id, record)

    def serve_from(self, started: float) -> None:
        """The log was read to its end by a poll begun at ``started``."""
        self.served_until = started + self.log_trust_seconds

    def distrust(self) -> None:
        """Empties the memo: change events may have been missed, or may be until the
        listener is registered on every member again (see :meth:`trusted`), and the log
        is joined again from its end."""
        self._records.clear()
        self.events += 1
        self.log_position = None
        self.served_until = 0.0
