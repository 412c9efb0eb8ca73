"""Request bodies of the management routes: parsed strictly, every field checked.

Malformed JSON (or a body that is not UTF-8) is a 400; well-formed JSON with a wrong shape
or value is a 422 that names the field. Unknown fields are refused rather than ignored,
so a typo (``"windows_seconds"``) is not silently dropped.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, NamedTuple

from api.errors import InvalidField, MalformedBody
from api.settings import Settings
from limiter import Alignment

__all__ = ["ClientUpdate", "NewClient", "parse_object", "validate_create", "validate_update"]

#: Unicode categories a name may not contain: controls, format characters (zero-width
#: and bidirectional marks), surrogates, private use, unassigned, line/paragraph breaks.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class NewClient(NamedTuple):
    """A valid create, the settings' defaults filled in."""

    name: str
    limit: int
    window_seconds: int
    window_alignment: Alignment


class ClientUpdate(NamedTuple):
    """A valid PATCH: None for what stays as it is."""

    limit: int | None
    window_seconds: int | None
    window_alignment: Alignment | None


#: What a body may say, in the order error messages list them.
CREATE_FIELDS = ("name", "limit", "window_seconds", "window_alignment")
UPDATE_FIELDS = ("limit", "window_seconds", "window_alignment")


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


def _refuse_unknown(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            raise InvalidField(key, f"unknown field; allowed: {', '.join(allowed)}")


def _positive_int(field: str, value: Any, maximum: int) -> int:
    # bool is an int in Python, and 5.0 is a float: both are refused.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be an integer")
    if value < 1:
        raise InvalidField(field, "must be at least 1")
    if value > maximum:
        raise InvalidField(field, f"must be at most {maximum}")
    return value


def _alignment(value: Any) -> Alignment:
    if not isinstance(value, str) or value not in {alignment.value for alignment in Alignment}:
        allowed = " or ".join(f'"{alignment.value}"' for alignment in Alignment)
        raise InvalidField("window_alignment", f"must be {allowed}")
    return Alignment(value)


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
    limit = data.get("limit", settings.default_limit)
    window = data.get("window_seconds", settings.default_window_seconds)
    alignment = data.get("window_alignment", settings.default_window_alignment)
    return NewClient(
        name,
        _positive_int("limit", limit, settings.max_limit),
        _positive_int("window_seconds", window, settings.max_window_seconds),
        _alignment(alignment),
    )


def validate_update(data: dict[str, Any], settings: Settings) -> ClientUpdate:
    if "name" in data:
        raise InvalidField("name", "cannot be changed; create a new client instead")
    _refuse_unknown(data, UPDATE_FIELDS)
    if not data:
        raise InvalidField("body", f"give at least one of {', '.join(UPDATE_FIELDS)}")
    limit = data.get("limit")
    window = data.get("window_seconds")
    return ClientUpdate(
        _positive_int("limit", limit, settings.max_limit) if "limit" in data else None,
        _positive_int("window_seconds", window, settings.max_window_seconds)
        if "window_seconds" in data
        else None,
        _alignment(data["window_alignment"]) if "window_alignment" in data else None,
    )
