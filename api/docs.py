"""Shapes for the OpenAPI document: request bodies as sent, with the bounds
:mod:`api.validation` enforces (those of the default settings), client records as
:meth:`registry.ClientRecord.as_dict` shows them, the usage of each limit, and errors.

The document states every rule of a body that JSON Schema (OpenAPI 3.0) can: one form or
the other (``oneOf`` of the single form and ``limits``), each algorithm's own fields
(``oneOf`` of one item shape per algorithm), every bound. Two rules of ``limits`` it can
only describe: names are unique, and at least one limit is enforced (not ``shadow``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sanic_ext.extensions.openapi.types import Array, Boolean, Integer, Object, Schema, String

from api.settings import Settings
from limiter import Algorithm, Alignment
from limiter.policy import MAX_LIMITS, NAME_PATTERN

__all__ = [
    "COST_DESCRIPTION",
    "LIMITS_DESCRIPTION",
    "Error",
    "FieldError",
    "Message",
    "Status",
    "client_name",
    "client_record",
    "client_update_body",
    "client_with_usage",
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


def _boolean(**keywords: object) -> Schema:
    return Boolean(**keywords)  # type: ignore[no-untyped-call]  # untyped upstream


def _object(properties: dict[str, Schema], **keywords: object) -> Schema:
    return Object(properties, **keywords)


def _array(items: Schema, **keywords: object) -> Schema:
    return Array(items, **keywords)


def _one_of(*shapes: Schema, **keywords: object) -> Schema:
    return Schema(oneOf=list(shapes), **keywords)  # type: ignore[no-untyped-call]


ALIGNMENTS = [alignment.value for alignment in Alignment]


def _client_fields(defaults: Settings) -> dict[str, Schema]:
    return {
        "limit": _integer(minimum=1, maximum=defaults.max_limit),
        "window_seconds": _integer(minimum=1, maximum=defaults.max_window_seconds),
        "window_alignment": _string(enum=ALIGNMENTS),
    }


LIMITS_DESCRIPTION = (
    f"the client's limits, 1 to {MAX_LIMITS}, each decided by its algorithm; a request is "
    "admitted when every enforced limit admits it. Names are unique and at least one limit "
    "is enforced (shadow false): a shadow limit is counted but never denies. A fixed window "
    "without window_alignment takes RATELIMIT_DEFAULT_WINDOW_ALIGNMENT; burst (gcra only) "
    "is how many requests may pass at once above the steady rate, 0 when absent."
)


def _limit_item(algorithm: Algorithm, defaults: Settings) -> Schema:
    """One item of ``limits`` of ``algorithm``: only that algorithm's own fields."""
    fields: dict[str, Schema] = {
        "name": _string(pattern=f"^{NAME_PATTERN.pattern}$"),
        "algorithm": _string(enum=[algorithm.value]),
        **_client_fields(defaults),
        "burst": _integer(minimum=0, maximum=defaults.max_limit),
        "shadow": _boolean(),
    }
    if algorithm is not Algorithm.FIXED_WINDOW:
        del fields["window_alignment"]
    if algorithm is not Algorithm.GCRA:
        del fields["burst"]
    return _object(
        fields,
        required=["name", "algorithm", "limit", "window_seconds"],
        additionalProperties=False,
    )


def limits_schema(defaults: Settings) -> Schema:
    """``limits`` as :func:`api.validation.validate_limits` accepts it (but the two rules
    no schema can say: see the module's docstring)."""
    items = _one_of(*(_limit_item(algorithm, defaults) for algorithm in Algorithm))
    return _array(items, minItems=1, maxItems=MAX_LIMITS, description=LIMITS_DESCRIPTION)


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
    """``POST /bucket``: a name and either ``limits``, or optionally the single form's
    limit, window and alignment (the settings' defaults otherwise); nothing else."""
    name = client_name(defaults)
    return _one_of(
        _object(
            {"name": name, **_client_fields(defaults)},
            required=["name"],
            additionalProperties=False,
        ),
        _object(
            {"name": name, "limits": limits_schema(defaults)},
            required=["name", "limits"],
            additionalProperties=False,
        ),
    )


def client_update_body(defaults: Settings) -> Schema:
    """``PATCH /bucket/{id}``: ``limits`` (the whole new list), or at least one of the
    single form's limit, window and alignment (a client of one fixed-window limit only);
    nothing else."""
    return _one_of(
        _object(_client_fields(defaults), minProperties=1, additionalProperties=False),
        _object(
            {"limits": limits_schema(defaults)}, required=["limits"], additionalProperties=False
        ),
    )


def _shown_limit() -> Schema:
    """A limit of a record as :func:`registry.records.limit_as_dict` shows it."""
    return _object(
        {
            "name": _string(),
            "algorithm": _string(enum=[algorithm.value for algorithm in Algorithm]),
            "limit": _integer(minimum=1),
            "window_seconds": _integer(minimum=1),
            "window_alignment": _string(enum=ALIGNMENTS, description="fixed_window only"),
            "burst": _integer(minimum=0, description="gcra only"),
            "shadow": _boolean(),
        },
        required=["name", "algorithm", "limit", "window_seconds", "shadow"],
    )


def _record_fields() -> dict[str, Schema]:
    first = "the first limit's, for clients of the single form"
    return {
        "id": _string(format="uuid"),
        "name": _string(),
        "limit": _integer(minimum=1, description=first),
        "window_seconds": _integer(minimum=1, description=first),
        "created_at": _string(),
        "window_alignment": _string(
            enum=ALIGNMENTS,
            nullable=True,
            description=f"{first}; null when the first limit is not a fixed window",
        ),
        "limits": _array(_shown_limit(), minItems=1, maxItems=MAX_LIMITS),
    }


RECORD_REQUIRED = ["id", "name", "limit", "window_seconds", "created_at", "window_alignment"]


def client_record() -> Schema:
    """A client as :meth:`registry.ClientRecord.as_dict` shows it."""
    return _object(_record_fields(), required=[*RECORD_REQUIRED, "limits"])


def _usage_fields() -> dict[str, Schema]:
    return {
        "window_start": _string(
            nullable=True, description="null for a gcra limit, which has no window"
        ),
        "used": _integer(minimum=0),
        "remaining": _integer(minimum=0),
        "reset_after_seconds": _integer(minimum=0),
    }


def client_with_usage() -> Schema:
    """``GET /bucket/{id}``: the record and ``usage``, the first limit's usage at the top
    (as for a client of one limit) and every limit's in ``usage.limits``."""
    limit_usage = _object(
        {
            "name": _string(),
            "algorithm": _string(enum=[algorithm.value for algorithm in Algorithm]),
            "limit": _integer(minimum=1),
            "window_seconds": _integer(minimum=1),
            "shadow": _boolean(),
            **_usage_fields(),
        },
        required=["name", "algorithm", "limit", "window_seconds", "shadow", "remaining"],
    )
    usage = _object(
        {**_usage_fields(), "limits": _array(limit_usage, minItems=1, maxItems=MAX_LIMITS)},
        required=["used", "remaining", "reset_after_seconds", "limits"],
    )
    return _object(
        {**_record_fields(), "usage": usage}, required=[*RECORD_REQUIRED, "limits", "usage"]
    )
