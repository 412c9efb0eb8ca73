"""Shapes for the OpenAPI document that exist nowhere else: request bodies as sent (every
field but the name optional), the usage of a window, and errors. A client record is
:class:`api.registry.ClientRecord` itself; validation is in :mod:`api.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.registry import ClientRecord
from limiter import Alignment

__all__ = [
    "ClientRecord",
    "ClientUpdateRequest",
    "ClientWithUsage",
    "Error",
    "FieldError",
    "Message",
    "NewClientRequest",
    "Status",
    "Usage",
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


@dataclass
class NewClientRequest:
    name: str
    limit: int | None = None
    window_seconds: int | None = None
    window_alignment: Alignment | None = None


@dataclass
class ClientUpdateRequest:
    limit: int | None = None
    window_seconds: int | None = None
    window_alignment: Alignment | None = None


@dataclass
class Usage:
    window_start: str
    used: int
    remaining: int
    reset_after_seconds: int


@dataclass(frozen=True)
class ClientWithUsage(ClientRecord):
    usage: Usage
