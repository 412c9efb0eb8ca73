"""Shapes for the OpenAPI document that exist nowhere else: request bodies as sent, with
the bounds :mod:`api.validation` enforces (those of the default settings), the usage of a
window, and errors. A client record is :class:`registry.ClientRecord` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanic_ext.extensions.openapi.types import Integer, Object, Schema, String

from api.settings import Settings
from limiter import Alignment
from registry import ClientRecord

__all__ = [
    "COST_DESCRIPTION",
    "ClientRecord",
    "ClientWithUsage",
    "Error",
    "FieldError",
    "Message",
    "Status",
    "Usage",
    "client_name",
    "client_update_body",
    "cost_schema",
    "new_client_body",
]


@dataclass
class Message:
    message: str


@dataclass
class Status:
    status: str


@dataclass
class Error:
    error: str


@dataclass
class FieldError:
    error: str
    field: str


def _integer(**keywords: object) -> Schema:
    return Integer(**keywords)  # type: ignore[no-untyped-call]  # untyped upstream


def _string(**keywords: object) -> Schema:
    return String(**keywords)  # type: ignore[no-untyped-call]  # untyped upstream


def _client_fields(defaults: Settings) -> dict[str, Schema]:
    return {
        "limit": _integer(minimum=1, maximum=defaults.max_limit),
        "window_seconds": _integer(minimum=1, maximum=defaults.max_window_seconds),
        "window_alignment": _string(enum=[alignment.value for alignment in Alignment]),
    }


COST_DESCRIPTION = (
    "how much of the client's limit this request uses: a whole number in decimal digits, "
    "at most RATELIMIT_MAX_COST (1 when absent; 400 when malformed). 0 is a peek: the "
    "usage in the rate-limit headers, 429 when the window is exhausted, nothing counted. "
    "A cost above the client's limit is a 429 without Retry-After: it never passes."
)


def cost_schema(defaults: Settings | None = None) -> Schema:
    """``X-RateLimit-Cost`` as :func:`api.cost.request_cost` accepts it, with the default
    settings' bound."""
    maximum = (defaults or Settings()).max_cost
    return _integer(minimum=0, maximum=maximum, default=1)


def client_name(defaults: Settings) -> Schema:
    """A name as :func:`api.validation.validate_name` accepts it, as far as a pattern can
    say: 1 to ``max_name_length`` characters, no whitespace at either end, no control
    character. (The validation also refuses format, private-use and unassigned characters,
    which a pattern cannot name portably.)"""
    edge = r"[^\s\x00-\x1f\x7f]"
    inner = r"[^\x00-\x1f\x7f]"
    return _string(
        minLength=1,
        maxLength=defaults.max_name_length,
        pattern=f"^{edge}(?:{inner}*{edge})?$",
    )


def new_client_body(defaults: Settings) -> Schema:
    """``POST /bucket``: a name, and optionally limit, window and alignment (the settings'
    defaults otherwise); nothing else."""
    return Object(
        {"name": client_name(defaults), **_client_fields(defaults)},
        required=["name"],
        additionalProperties=False,
    )


def client_update_body(defaults: Settings) -> Schema:
    """``PATCH /bucket/{id}``: at least one of limit, window and alignment; nothing else."""
    return Object(_client_fields(defaults), minProperties=1, additionalProperties=False)


@dataclass
class Usage:
    window_start: str
    used: int
    remaining: int
    reset_after_seconds: int


@dataclass(frozen=True)
class ClientWithUsage(ClientRecord):
    usage: Usage
