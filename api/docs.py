"""Shapes of the bodies, for the OpenAPI document only (validation is in api.validation)."""

from __future__ import annotations

from dataclasses import dataclass

from limiter import Alignment

__all__ = [
    "Bucket",
    "BucketUpdate",
    "BucketWithUsage",
    "Error",
    "FieldError",
    "Message",
    "NewBucket",
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
class NewBucket:
    name: str
    limit: int | None = None
    window_seconds: int | None = None
    window_alignment: Alignment | None = None


@dataclass
class BucketUpdate:
    limit: int | None = None
    window_seconds: int | None = None
    window_alignment: Alignment | None = None


@dataclass
class Bucket:
    id: str
    name: str
    limit: int
    window_seconds: int
    created_at: str
    window_alignment: Alignment


@dataclass
class Usage:
    window_start: str
    used: int
    remaining: int
    reset_after_seconds: int


@dataclass
class BucketWithUsage:
    id: str
    name: str
    limit: int
    window_seconds: int
    created_at: str
    window_alignment: Alignment
    usage: Usage
