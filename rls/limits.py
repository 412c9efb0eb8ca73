"""A descriptor's ``rate_limit`` block, resolved into what the limiter enforces.

Why a module of its own: the upstream block (``unit``, ``requests_per_unit``,
``unlimited``, ``name``, ``replaces``) and this service's extensions (every key starting
with ``x_``) meet here, and every combination of them must come out as one
:class:`limiter.Policy` or one error naming the key at fault.

Upstream counts in clock-aligned fixed windows (its cache key holds
``(now / divider) * divider``), so a plain block becomes one ``fixed_window`` limit with
:attr:`limiter.rule.Alignment.CLOCK`. The extensions:

* ``x_window_seconds: N`` instead of ``unit``: any whole number of seconds;
* ``x_algorithm: fixed_window | sliding_window | gcra`` and ``x_burst: N`` (GCRA only);
* ``x_limits: [...]`` instead of all of the above: several limits on one descriptor,
  each ``{name, algorithm?, requests_per_unit | limit, unit | window_seconds, burst?,
  shadow?}``, decided together in one atomic step.

Upstream refuses every key it does not know, and none of its keys starts with ``x_``, so
an extension can never be mistaken for (or shadow) an upstream key.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

from limiter.policy import MAX_LIMITS, NAME_PATTERN, Algorithm, Limit, Policy
from limiter.rule import Alignment
from rls.errors import Location
from rls.source import Tree, mapping, optional_list, to_bool, to_str, to_uint

__all__ = [
    "RATE_LIMIT_KEYS",
    "UNIT_SECONDS",
    "RateLimitSpec",
    "override_spec",
    "resolve_rate_limit",
    "unit_of",
]

#: Each unit's window, in seconds. These are upstream's ``utils.UnitToDivider``
#: (src/utils/utilities.go), the divider of its cache key's window start; the unit names
#: are the ``RateLimitResponse.RateLimit.Unit`` enum of Envoy's ratelimit v3 API, which
#: upstream matches case-insensitively (``strings.ToUpper``).
UNIT_SECONDS: Mapping[str, int] = {
    "second": 1,  # UnitToDivider: SECOND -> 1
    "minute": 60,  # MINUTE -> 60
    "hour": 60 * 60,  # HOUR -> 60 * 60
    "day": 60 * 60 * 24,  # DAY -> 60 * 60 * 24
    "week": 60 * 60 * 24 * 7,  # WEEK -> 60 * 60 * 24 * 7
    "month": 60 * 60 * 24 * 30,  # MONTH -> 60 * 60 * 24 * 30 (not a calendar month)
    "year": 60 * 60 * 24 * 365,  # YEAR -> 60 * 60 * 24 * 365 (no leap days)
}

_UPSTREAM_KEYS = frozenset({"unit", "requests_per_unit", "unlimited", "name", "replaces"})
_SINGLE_EXTENSIONS = frozenset({"x_window_seconds", "x_algorithm", "x_burst"})
#: Every key a ``rate_limit`` block may hold.
RATE_LIMIT_KEYS = _UPSTREAM_KEYS | _SINGLE_EXTENSIONS | {"x_limits"}
_LIST_ITEM_KEYS = frozenset(
    {"name", "algorithm", "requests_per_unit", "limit", "unit", "window_seconds"}
    | {"burst", "shadow"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """A resolved ``rate_limit`` block.

    ``policy`` is what the limiter decides with; it is ``None`` when ``unlimited`` (no
    counting at all) or ``blocked`` (``requests_per_unit: 0``, upstream's way to deny a
    key outright, which no :class:`limiter.Limit` can express). ``name`` and
    ``replaces`` are upstream's, for dropping a replaced rule among a request's matches.
    """

    policy: Policy | None
    unlimited: bool = False
    blocked: bool = False
    name: str | None = None
    replaces: tuple[str, ...] = ()


def resolve_rate_limit(block: Tree, where: Location) -> RateLimitSpec:
    """The spec of one ``rate_limit`` block, or the first error in it."""
    fields = mapping(block, where, RATE_LIMIT_KEYS)
    name = to_str(fields.get("name"), where.key("name")) or None
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise where.key("name").error(
            f'name "{name}" is not a lower-case letter then up to 31 of [a-z0-9_-]'
        )
    replaces = _replaces(fields.get("replaces"), where.key("replaces"), name)
    if to_bool(fields.get("unlimited"), where.key("unlimited")):
        # Upstream refuses a valid unit here and silently ignores the rest.
        if to_str(fields.get("unit"), where.key("unit")).lower() in UNIT_SECONDS:
            raise where.key("unit").error("should not specify rate limit unit when unlimited")
        to_uint(fields.get("requests_per_unit"), where.key("requests_per_unit"))
        for key in sorted(_SINGLE_EXTENSIONS | {"x_limits"}):
            if key in fields:
                raise where.key(key).error("has no meaning on an unlimited rate limit")
        return RateLimitSpec(None, unlimited=True, name=name, replaces=replaces)
    if "x_limits" in fields:
        for key in sorted(_SINGLE_EXTENSIONS | {"unit", "requests_per_unit"}):
            if key in fields:
                raise where.key(key).error("belongs inside each of x_limits, not beside it")
        limits = _limit_list(fields["x_limits"], where.key("x_limits"))
        return RateLimitSpec(_policy(limits, where.key("x_limits")), name=name, replaces=replaces)
    window = _window(fields, "unit", "x_window_seconds", where)
    requests = to_uint(fields.get("requests_per_unit"), where.key("requests_per_unit"))
    algorithm = _algorithm(fields.get("x_algorithm"), where.key("x_algorithm"))
    burst = to_uint(fields.get("x_burst"), where.key("x_burst"), maximum=2**61)
    if burst and algorithm is not Algorithm.GCRA:
        raise where.key("x_burst").error("belongs to x_algorithm: gcra only")
    if requests == 0:
        # Upstream counts and is over the limit at once (README "Example 3", a black list).
        return RateLimitSpec(None, blocked=True, name=name, replaces=replaces)
    limit_name = name or _derived_name(fields, window)
    limit = _limit(limit_name, algorithm, requests, window, burst, False, where)
    return RateLimitSpec(_policy([limit], where), name=name, replaces=replaces)


def _replaces(value: Tree, where: Location, own_name: str | None) -> tuple[str, ...]:
    """The names a rule replaces; upstream refuses an empty one and its own name."""
    names: list[str] = []
    for i, item in enumerate(optional_list(value, where)):
        entry = mapping(item, where.index(i), frozenset({"name"}))
        replaced = to_str(entry.get("name"), where.index(i).key("name"))
        if not replaced:
            raise where.index(i).error("should not have an empty replaces entry")
        if replaced == own_name:
            raise where.index(i).error("replaces should not contain name of same descriptor")
        names.append(replaced)
    return tuple(names)


def _window(fields: Mapping[str, Tree], unit_key: str, seconds_key: str, where: Location) -> int:
    """The window in seconds, from exactly one of a unit or a whole number of seconds."""
    if seconds_key in fields:
        if unit_key in fields:
            raise where.key(seconds_key).error(f"give either {unit_key} or {seconds_key}")
        seconds = to_uint(fields[seconds_key], where.key(seconds_key), maximum=2**61 // 1000)
        if seconds == 0:
            raise where.key(seconds_key).error("a window is at least 1 second")
        return seconds
    unit = to_str(fields.get(unit_key), where.key(unit_key))
    if unit.lower() not in UNIT_SECONDS:
        raise where.key(unit_key).error(f'unknown unit "{unit}"')
    return UNIT_SECONDS[unit.lower()]


def _derived_name(fields: Mapping[str, Tree], window: int) -> str:
    """The name of a limit the configuration leaves unnamed: ``per_minute`` from its unit,
    ``per_90s`` from a window in seconds (limit names go into headers and metrics)."""
    unit = fields.get("unit")
    return f"per_{unit.lower()}" if isinstance(unit, str) else f"per_{window}s"


def _algorithm(value: Tree, where: Location) -> Algorithm:
    """The algorithm named, ``fixed_window`` (upstream's only one) when none is."""
    text = to_str(value, where)
    if not text:
        return Algorithm.FIXED_WINDOW
    try:
        return Algorithm(text)
    except ValueError:
        known = ", ".join(a.value for a in Algorithm)
        raise where.error(f'unknown algorithm "{text}" (one of {known})') from None


def _limit_list(value: Tree, where: Location) -> list[Limit]:
    """The limits of ``x_limits``: 1 to :data:`limiter.policy.MAX_LIMITS`, each named."""
    items = optional_list(value, where)
    if not 1 <= len(items) <= MAX_LIMITS:
        raise where.error(f"holds 1 to {MAX_LIMITS} limits, got {len(items)}")
    limits: list[Limit] = []
    for i, item in enumerate(items):
        here = where.index(i)
        fields = mapping(item, here, _LIST_ITEM_KEYS)
        name = to_str(fields.get("name"), here.key("name"))
        if not NAME_PATTERN.fullmatch(name):
            raise here.key("name").error(
                f'name "{name}" is not a lower-case letter then up to 31 of [a-z0-9_-]'
            )
        if ("limit" in fields) == ("requests_per_unit" in fields):
            raise here.error("give exactly one of limit or requests_per_unit")
        count_key = "limit" if "limit" in fields else "requests_per_unit"
        count = to_uint(fields[count_key], here.key(count_key), maximum=2**61)
        if count == 0:
            raise here.key(count_key).error("at least 1 (use unlimited or 0 outside x_limits)")
        algorithm = _algorithm(fields.get("algorithm"), here.key("algorithm"))
        window = _window(fields, "unit", "window_seconds", here)
        burst = to_uint(fields.get("burst"), here.key("burst"), maximum=2**61)
        shadow = to_bool(fields.get("shadow"), here.key("shadow"))
        limits.append(_limit(name, algorithm, count, window, burst, shadow, here))
    return limits


def _limit(
    name: str,
    algorithm: Algorithm,
    count: int,
    window: int,
    burst: int,
    shadow: bool,
    where: Location,
) -> Limit:
    """A :class:`limiter.Limit`; what it refuses (burst off GCRA, overflows) is reported
    at ``where``. Fixed windows are clock-aligned, as upstream's are."""
    alignment = Alignment.CLOCK if algorithm is Algorithm.FIXED_WINDOW else None
    try:
        return Limit(name, algorithm, count, window, alignment, burst, shadow)
    except ValueError as exc:
        raise where.error(str(exc)) from None


def _policy(limits: list[Limit], where: Location) -> Policy:
    """A :class:`limiter.Policy`; duplicate names or all-shadow lists are reported at
    ``where``."""
    try:
        return Policy(tuple(limits))
    except ValueError as exc:
        raise where.error(str(exc)) from None


@functools.lru_cache(maxsize=256)
def override_spec(requests_per_unit: int, unit: str) -> RateLimitSpec:
    """The rule of a request descriptor's own ``limit`` (Envoy's ``RateLimitOverride``),
    which upstream uses instead of the configuration's: one clock-aligned fixed window of
    ``requests_per_unit`` per ``unit`` (a unit name of :data:`UNIT_SECONDS`), named after
    its unit; 0 requests is ``blocked``, as in a file. Raises ``KeyError`` for an unknown
    unit."""
    window = UNIT_SECONDS[unit]
    if requests_per_unit == 0:
        return RateLimitSpec(None, blocked=True)
    limit = Limit(f"per_{unit}", Algorithm.FIXED_WINDOW, requests_per_unit, window, Alignment.CLOCK)
    return RateLimitSpec(Policy((limit,)))


_UNIT_OF_WINDOW = {seconds: unit for unit, seconds in UNIT_SECONDS.items()}


def unit_of(window_seconds: int) -> str | None:
    """The unit whose window is ``window_seconds`` long, if one is (for answers that name
    a limit by unit, as Envoy's protocol does)."""
    return _UNIT_OF_WINDOW.get(window_seconds)
