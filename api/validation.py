"""Request bodies of the management routes: parsed strictly, every field checked.

Malformed JSON (or a body that is not UTF-8) is a 400; well-formed JSON with a wrong shape
or value is a 422 that names the field. Unknown fields are refused rather than ignored,
so a typo (``"windows_seconds"``) is not silently dropped.

A client's limits come in one of two forms: ``limits``, a list of 1 to 8 limits each with
its algorithm, or the single form (``limit``, ``window_seconds``, ``window_alignment``),
which means a list of one fixed-window limit named ``default`` and stays valid for every
client written before lists existed. A field of a list item is named ``limits[i].field``.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from typing import Any, NamedTuple

from api.errors import InvalidField, MalformedBody
from api.settings import Settings
from limiter import Algorithm, Alignment, Limit, Policy
from limiter.policy import MAX_LIMITS, NAME_PATTERN
from registry import ClientRecord

__all__ = [
    "ClientUpdate",
    "NewClient",
    "parse_object",
    "validate_create",
    "validate_limits",
    "validate_update",
]

#: Unicode categories a name may not contain: controls, format characters (zero-width
#: and bidirectional marks), surrogates, private use, unassigned, line/paragraph breaks.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class NewClient(NamedTuple):
    """A valid create, the settings' defaults filled in."""

    name: str
    policy: Policy


class ClientUpdate(NamedTuple):
    """A valid PATCH: a whole new list of limits, or changes in the single form (None for
    what stays as it is)."""

    limits: Policy | None
    limit: int | None
    window_seconds: int | None
    window_alignment: Alignment | None

    def apply(self, record: ClientRecord) -> Policy:
        """The policy this change gives ``record`` (:data:`registry.PolicyChange`).

        ``limits`` replaces the whole list. The single form changes the one limit of a
        client whose policy is exactly one fixed-window limit, keeping its name; on any
        other client it is a 422: which of several limits it meant cannot be guessed.
        """
        if self.limits is not None:
            return self.limits
        if not record.single_form:
            sent = next(f for f in SINGLE_FIELDS if getattr(self, f) is not None)
            raise InvalidField(
                sent,
                f"this client has {len(record.policy)} limit(s), not one fixed window: "
                "send limits, the whole list, to change them",
            )
        first = record.first
        changed = dataclasses.replace(
            first,
            limit=first.limit if self.limit is None else self.limit,
            window_seconds=(
                first.window_seconds if self.window_seconds is None else self.window_seconds
            ),
            alignment=first.alignment if self.window_alignment is None else self.window_alignment,
        )
        return Policy((changed,))


#: The single form: one fixed-window limit, given by these top-level fields.
SINGLE_FIELDS = ("limit", "window_seconds", "window_alignment")
#: What a body may say, in the order error messages list them.
CREATE_FIELDS = ("name", "limits", *SINGLE_FIELDS)
UPDATE_FIELDS = ("limits", *SINGLE_FIELDS)
#: What one item of ``limits`` may say.
LIMIT_FIELDS = (
    "name",
    "algorithm",
    "limit",
    "window_seconds",
    "window_alignment",
    "burst",
    "shadow",
)
REQUIRED_LIMIT_FIELDS = ("name", "algorithm", "limit", "window_seconds")


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 when it is not JSON, 422 when not an object."""
    if not body.strip():
        raise MalformedBody("the body is empty: send a JSON object")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedBody("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidField("body", "must be a JSON object")
    return data


def _refuse_unknown(data: dict[str, Any], allowed: tuple[str, ...], where: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise InvalidField(where + key, f"unknown field; allowed: {', '.join(allowed)}")


def _positive_int(field: str, value: Any, maximum: int) -> int:
    # bool is an int in Python, and 5.0 is a float: both are refused.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be an integer")
    if value < 1:
        raise InvalidField(field, "must be at least 1")
    if value > maximum:
        raise InvalidField(field, f"must be at most {maximum}")
    return value


def _alignment(value: Any, field: str = "window_alignment") -> Alignment:
    if not isinstance(value, str) or value not in {alignment.value for alignment in Alignment}:
        allowed = " or ".join(f'"{alignment.value}"' for alignment in Alignment)
        raise InvalidField(field, f"must be {allowed}")
    return Alignment(value)


def _limit(where: str, item: Any, settings: Settings) -> Limit:
    """One item of ``limits``; every error names its field as ``limits[i].field``."""
    if not isinstance(item, dict):
        raise InvalidField(where, "must be an object")
    _refuse_unknown(item, LIMIT_FIELDS, f"{where}.")
    for required in REQUIRED_LIMIT_FIELDS:
        if required not in item:
            raise InvalidField(f"{where}.{required}", "is required")
    name = item["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidField(
            f"{where}.name", "must be a lower-case letter then up to 31 of a-z, 0-9, _ and -"
        )
    algorithm = item["algorithm"]
    if not isinstance(algorithm, str) or algorithm not in {a.value for a in Algorithm}:
        allowed = ", ".join(f'"{a.value}"' for a in Algorithm)
        raise InvalidField(f"{where}.algorithm", f"must be one of {allowed}")
    kind = Algorithm(algorithm)
    limit = _positive_int(f"{where}.limit", item["limit"], settings.max_limit)
    window = _positive_int(
        f"{where}.window_seconds", item["window_seconds"], settings.max_window_seconds
    )
    alignment: Alignment | None = None
    if kind is Algorithm.FIXED_WINDOW:
        raw = item.get("window_alignment", settings.default_window_alignment)
        alignment = _alignment(raw, f"{where}.window_alignment")
    elif "window_alignment" in item:
        raise InvalidField(f"{where}.window_alignment", "belongs to fixed_window limits only")
    burst = 0
    if "burst" in item:
        if kind is not Algorithm.GCRA:
            raise InvalidField(f"{where}.burst", "belongs to gcra limits only")
        burst = _count(f"{where}.burst", item["burst"], settings.max_limit)
    shadow = item.get("shadow", False)
    if not isinstance(shadow, bool):
        raise InvalidField(f"{where}.shadow", "must be true or false")
    try:
        return Limit(name, kind, limit, window, alignment, burst, shadow)
    except ValueError as refused:
        # What is left for the constructor to refuse are its algorithms' arithmetic
        # bounds (under settings above the defaults): GCRA's on the burst, the sliding
        # window's on the limit.
        field = "burst" if kind is Algorithm.GCRA else "limit"
        problem = str(refused).removeprefix(f"{name}: ")
        raise InvalidField(f"{where}.{field}", problem) from None


def _count(field: str, value: Any, maximum: int) -> int:
    """A whole number from 0 (a GCRA burst)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be an integer")
    if not 0 <= value <= maximum:
        raise InvalidField(field, f"must be between 0 and {maximum}")
    return value


def validate_limits(value: Any, settings: Settings) -> Policy:
    """``limits``: 1 to :data:`limiter.policy.MAX_LIMITS` limits, unique names, at least
    one enforced."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIMITS:
        raise InvalidField("limits", f"must be a list of 1 to {MAX_LIMITS} limits")
    limits = [_limit(f"limits[{i}]", item, settings) for i, item in enumerate(value)]
    seen: dict[str, int] = {}
    for i, limit in enumerate(limits):
        if limit.name in seen:
            raise InvalidField(
                f"limits[{i}].name",
                f"{limit.name!r} is limits[{seen[limit.name]}]'s: names are unique",
            )
        seen[limit.name] = i
    if all(limit.shadow for limit in limits):
        raise InvalidField("limits", "at least one limit must be enforced (shadow false)")
    return Policy(tuple(limits))


def _one_form(data: dict[str, Any]) -> None:
    """``limits`` and the single form say the same thing two ways: one of them, please."""
    if "limits" in data and any(field in data for field in SINGLE_FIELDS):
        raise InvalidField(
            "limits", f"give limits or the single form ({', '.join(SINGLE_FIELDS)}), not both"
        )


def validate_name(value: Any, settings: Settings) -> str:
    """A name in NFC form: 1 to ``max_name_length`` characters, no control or format
    characters, no leading or trailing whitespace."""
    if not isinstance(value, str):
        raise InvalidField("name", "must be a string")
    name = unicodedata.normalize("NFC", value)
    if not name.strip():
        raise InvalidField("name", "must not be empty")
    if len(name) > settings.max_name_length:
        raise InvalidField("name", f"must be at most {settings.max_name_length} characters")
    if name != name.strip():
        raise InvalidField("name", "must not start or end with whitespace")
    if any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in name):
        raise InvalidField("name", "must not contain control or invisible characters")
    return name


def validate_create(data: dict[str, Any], settings: Settings) -> NewClient:
    _refuse_unknown(data, CREATE_FIELDS)
    if "name" not in data:
        raise InvalidField("name", "is required")
    name = validate_name(data["name"], settings)
    _one_form(data)
    if "limits" in data:
        return NewClient(name, validate_limits(data["limits"], settings))
    limit = data.get("limit", settings.default_limit)
    window = data.get("window_seconds", settings.default_window_seconds)
    alignment = data.get("window_alignment", settings.default_window_alignment)
    return NewClient(
        name,
        Policy.single(
            _positive_int("limit", limit, settings.max_limit),
            _positive_int("window_seconds", window, settings.max_window_seconds),
            _alignment(alignment),
        ),
    )


def validate_update(data: dict[str, Any], settings: Settings) -> ClientUpdate:
    if "name" in data:
        raise InvalidField("name", "cannot be changed; create a new client instead")
    _refuse_unknown(data, UPDATE_FIELDS)
    if not data:
        raise InvalidField("body", f"give at least one of {', '.join(UPDATE_FIELDS)}")
    _one_form(data)
    if "limits" in data:
        return ClientUpdate(validate_limits(data["limits"], settings), None, None, None)
    limit = data.get("limit")
    window = data.get("window_seconds")
    return ClientUpdate(
        None,
        _positive_int("limit", limit, settings.max_limit) if "limit" in data else None,
        _positive_int("window_seconds", window, settings.max_window_seconds)
        if "window_seconds" in data
        else None,
        _alignment(data["window_alignment"]) if "window_alignment" in data else None,
    )
