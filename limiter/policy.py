"""A client's policy: the ordered list of its limits, each with its own algorithm.

Why: one limit per client cannot say "10 per second and 1000 per day", nor try a new limit
on live traffic before enforcing it. A :class:`Policy` holds 1 to
:data:`MAX_LIMITS` :class:`Limit` specs; :mod:`limiter.policy_rule` decides one request
against all of them at once. A spec is checked when it is built, so a rule never sees a
field that does not belong to its algorithm nor one that could overflow its arithmetic
(the bounds the rules themselves check, in Python and in Java).

A limit's ``name`` is what an operator sees: it goes into the ``RateLimit-Policy`` and
``RateLimit`` headers (as a Structured Fields string, and it is also a valid token) and
into a metric label, so it is short and made of ``[a-z0-9_-]``, starting with a letter.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import zlib

from limiter.gcra import MAX_CAPACITY_TIMES_WINDOW_MS
from limiter.rule import Alignment
from limiter.sliding_window import MAX_LIMIT_TIMES_WINDOW_MS

__all__ = ["DEFAULT_NAME", "MAX_LIMITS", "NAME_PATTERN", "Algorithm", "Limit", "Policy"]

#: The most limits one client may have: every one is decided in the same atomic call.
MAX_LIMITS = 8

#: The name of the one limit of a client given in the single form.
DEFAULT_NAME = "default"

#: A limit's name: a letter, then up to 31 lower-case letters, digits, ``_`` or ``-``.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")

#: The largest limit and window (in ms) of any algorithm, so that ``limit + 1`` and
#: ``window_seconds * 1000`` stay far from a Java ``long``'s end.
MAX_LIMIT = 2**61
MAX_WINDOW_MS = 2**61


class Algorithm(enum.StrEnum):
    """A limit's rule. The Java mirror numbers them in this order (``PolicyRule``)."""

    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW = "sliding_window"
    GCRA = "gcra"

    @property
    def wire_id(self) -> int:
        """The number Java gives it (``PolicyRule.FIXED_WINDOW`` = 0, ...)."""
        return list(Algorithm).index(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """One limit of a policy: ``limit`` per ``window_seconds`` under ``algorithm``.

    ``alignment`` belongs to ``fixed_window`` only (``None`` there means ``clock``), ``burst``
    to ``gcra`` only (requests that may pass at once above the steady one). A ``shadow``
    limit is decided and counted but never denies (see :mod:`limiter.policy_rule`).
    """

    name: str
    algorithm: Algorithm
    limit: int
    window_seconds: int
    alignment: Alignment | None = None
    burst: int = 0
    shadow: bool = False
    #: Which stored state is this limit's (see :attr:`slot`); worked out once.
    _slot: int = dataclasses.field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"a limit's name is a lower-case letter then up to 31 of [a-z0-9_-], "
                f"got {self.name!r}"
            )
        if not isinstance(self.algorithm, Algorithm):
            raise ValueError(f"{self.name}: unknown algorithm {self.algorithm!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"{self.name}: limit must be in [1, 2**61], got {self.limit}")
        if not 1 <= self.window_seconds * 1000 <= MAX_WINDOW_MS:
            raise ValueError(
                f"{self.name}: window_seconds must be in [1, 2**61 / 1000], "
                f"got {self.window_seconds}"
            )
        if self.algorithm is Algorithm.FIXED_WINDOW:
            if self.alignment is None:
                object.__setattr__(self, "alignment", Alignment.CLOCK)
            elif not isinstance(self.alignment, Alignment):
                raise ValueError(f"{self.name}: unknown alignment {self.alignment!r}")
        elif self.alignment is not None:
            raise ValueError(f"{self.name}: alignment belongs to fixed_window only")
        if self.algorithm is not Algorithm.GCRA and self.burst != 0:
            raise ValueError(f"{self.name}: burst belongs to gcra only")
        window_ms = self.window_seconds * 1000
        if self.algorithm is Algorithm.SLIDING_WINDOW and self.limit > (
            MAX_LIMIT_TIMES_WINDOW_MS // window_ms
        ):
            raise ValueError(f"{self.name}: limit * window_ms must be at most 2**61")
        if self.algorithm is Algorithm.GCRA and not (
            0 <= self.burst < MAX_CAPACITY_TIMES_WINDOW_MS // window_ms
        ):
            raise ValueError(
                f"{self.name}: burst must be >= 0 and (burst + 1) * window_ms at most 2**61"
            )
        identity = f"{self.name}/{self.algorithm.value}/{self.window_seconds}"
        object.__setattr__(self, "_slot", zlib.crc32(identity.encode()))

    @property
    def slot(self) -> int:
        """The number that ties a stored state to this limit: a crc32 of its name,
        algorithm and window length. A PATCH that keeps those three keeps the limit's
        usage (its value, alignment, burst or shadow flag may change); any other limit
        starts empty. The member stores and matches it, never computes it."""
        return self._slot

    @property
    def capacity(self) -> int:
        """What this limit's ``remaining`` counts out of: its limit, or for GCRA the
        bucket of ``burst + 1`` (which may exceed the limit)."""
        return self.burst + 1 if self.algorithm is Algorithm.GCRA else self.limit

    @property
    def enforced(self) -> bool:
        """Whether this limit may deny a request (it is not a shadow limit)."""
        return not self.shadow


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """A client's limits, in the order its answers list them: 1 to :data:`MAX_LIMITS`,
    unique names, at least one enforced (so some limit always speaks for the client)."""

    limits: tuple[Limit, ...]
    #: Worked out once: a policy is hashed on every request (lanes, deny cache).
    _hash: int = dataclasses.field(default=0, init=False, repr=False, compare=False)
    #: Worked out once, for the rule's combination of every answer (policy_rule.combine):
    #: the indices of the enforced and of the shadow limits, and each limit's capacity.
    enforced_indices: tuple[int, ...] = dataclasses.field(
        default=(), init=False, repr=False, compare=False
    )
    shadow_indices: tuple[int, ...] = dataclasses.field(
        default=(), init=False, repr=False, compare=False
    )
    capacities: tuple[int, ...] = dataclasses.field(
        default=(), init=False, repr=False, compare=False
    )
    #: Each limit's ``limit``, in order (what the member's answer is read with).
    values: tuple[int, ...] = dataclasses.field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", tuple(self.limits))
        object.__setattr__(self, "_hash", hash(self.limits))
        indices = range(len(self.limits))
        enforced = tuple(i for i in indices if not self.limits[i].shadow)
        object.__setattr__(self, "enforced_indices", enforced)
        object.__setattr__(self, "shadow_indices", tuple(i for i in indices if i not in enforced))
        object.__setattr__(self, "capacities", tuple(limit.capacity for limit in self.limits))
        object.__setattr__(self, "values", tuple(limit.limit for limit in self.limits))
        if not 1 <= len(self.limits) <= MAX_LIMITS:
            raise ValueError(f"a policy has 1 to {MAX_LIMITS} limits, got {len(self.limits)}")
        names = [limit.name for limit in self.limits]
        if len(set(names)) != len(names):
            raise ValueError(f"a policy's limit names must be unique, got {names}")
        if all(limit.shadow for limit in self.limits):
            raise ValueError("a policy needs at least one enforced (non-shadow) limit")

    def __len__(self) -> int:
        return len(self.limits)

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def single(
        cls, limit: int, window_seconds: int, alignment: Alignment = Alignment.CLOCK
    ) -> Policy:
        """The policy of a client given in the single form (one ``limit`` per
        ``window_seconds``): one fixed-window limit named :data:`DEFAULT_NAME`."""
        return cls((Limit(DEFAULT_NAME, Algorithm.FIXED_WINDOW, limit, window_seconds, alignment),))
