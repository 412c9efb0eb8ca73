"""Client management: ``POST /bucket``, ``GET /bucket?name=``, ``GET|PATCH|DELETE /bucket/{id}``.

Every route needs ``Authorization: Bearer <RATELIMIT_ADMIN_TOKEN>`` (403 while no token is
configured, 401 without the right one). A body is a JSON object of at most
``RATELIMIT_MAX_BODY_BYTES`` (413 above it); malformed JSON is 400, a bad field 422 naming
it. Each route waits at most :data:`MANAGEMENT_TIMEOUT_SECONDS` for the cluster, then
answers 503 with ``Retry-After``.

Changing ``window_seconds`` starts counting afresh in windows of the new length;
changing ``limit`` applies to the window in progress; changing ``window_alignment`` only
moves where the next window opens (the window in progress runs to its end). Deleting a
client leaves its counters to expire with their window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from hazelcast.errors import HazelcastError
from sanic import Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext.extensions.openapi import openapi

from api.auth import require_admin
from api.backend import Backend, backend_of
from api.docs import Bucket, BucketUpdate, BucketWithUsage, Error, FieldError, NewBucket
from api.errors import ClusterUnavailable, InvalidField, NameTaken, UnknownClient
from api.registry import NameTaken as RegistryNameTaken
from api.registry import Registry, parse_client_id
from api.usage import current_usage
from api.validation import parse_object, validate_create, validate_name, validate_update
from limiter import BackendError, Strategy

__all__ = [
    "MANAGEMENT_TIMEOUT_SECONDS",
    "create_bucket",
    "delete_bucket",
    "find_bucket",
    "read_bucket",
    "update_bucket",
]

#: Longest a management request waits for the cluster (a few round trips).
MANAGEMENT_TIMEOUT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1


@contextlib.asynccontextmanager
async def _cluster_call() -> AsyncIterator[None]:
    """Bounds the cluster work of one management request; no answer becomes a 503."""
    try:
        async with asyncio.timeout(MANAGEMENT_TIMEOUT_SECONDS):
            yield
    except TimeoutError:
        raise ClusterUnavailable(
            f"no answer from the cluster within {MANAGEMENT_TIMEOUT_SECONDS}s",
            RETRY_AFTER_SECONDS,
        ) from None
    except (HazelcastError, BackendError) as error:
        raise ClusterUnavailable(
            f"cluster unavailable ({type(error).__name__})", RETRY_AFTER_SECONDS
        ) from None


def _registry(backend: Backend) -> Registry:
    if backend.registry is None:
        raise ClusterUnavailable("not connected to the cluster yet", RETRY_AFTER_SECONDS)
    return backend.registry


def _strategy(backend: Backend) -> Strategy:
    if backend.strategy is None:
        raise ClusterUnavailable("not connected to the cluster yet", RETRY_AFTER_SECONDS)
    return backend.strategy


def _client_id(raw: str) -> str:
    client_id = parse_client_id(raw)
    if client_id is None:
        raise UnknownClient("unknown client id")
    return client_id


_ADMIN: dict[str, list[str]] = {"admin": []}
_COMMON_ERRORS = (
    (401, "missing or wrong admin token"),
    (403, "client management disabled (no RATELIMIT_ADMIN_TOKEN)"),
    (503, "the cluster did not answer in time"),
)


def _documented_errors(*extra: tuple[int, str]) -> list[dict[str, object]]:
    return [
        {"status": status, "content": {"application/json": Error}, "description": text}
        for status, text in (*_COMMON_ERRORS, *extra)
    ]


_BODY_ERRORS = (
    (400, "malformed JSON"),
    (413, "body over RATELIMIT_MAX_BODY_BYTES"),
)
_FIELD_ERROR = {
    "status": 422,
    "content": {"application/json": FieldError},
    "description": "a field is missing or invalid; field names it",
}


@openapi.definition(
    summary="Create a client (name unique; limit, window and alignment default to the settings)",
    tag="buckets",
    body={"application/json": NewBucket},
    secured=_ADMIN,
    response=[
        {"status": 201, "content": {"application/json": Bucket}, "description": "created"},
        *_documented_errors(*_BODY_ERRORS, (409, "the name is taken")),
        _FIELD_ERROR,
    ],
)
async def create_bucket(request: Request) -> HTTPResponse:
    backend = backend_of(request)
    require_admin(request, backend.settings)
    new = validate_create(parse_object(request.body), backend.settings)
    registry = _registry(backend)
    try:
        async with _cluster_call():
            record = await registry.create(
                new.name, new.limit, new.window_seconds, new.window_alignment
            )
    except RegistryNameTaken:
        raise NameTaken("a client with this name already exists") from None
    return json(record.as_dict(), status=201, headers={"Location": f"/bucket/{record.id}"})


@openapi.definition(
    summary="The client holding a name: the way back when a create's answer was lost",
    tag="buckets",
    secured=_ADMIN,
    parameter={"name": "name", "schema": str, "location": "query", "required": True},
    response=[
        {"status": 200, "content": {"application/json": Bucket}, "description": "found"},
        *_documented_errors((404, "no client has this name")),
        _FIELD_ERROR,
    ],
)
async def find_bucket(request: Request) -> HTTPResponse:
    backend = backend_of(request)
    require_admin(request, backend.settings)
    names = request.args.getlist("name")
    if len(names) != 1:
        raise InvalidField("name", "give exactly one name query parameter")
    name = validate_name(names[0], backend.settings)
    registry = _registry(backend)
    async with _cluster_call():
        record = await registry.find(name)
    if record is None:
        raise UnknownClient("no client has this name")
    return json(record.as_dict())


@openapi.definition(
    summary="A client's record and its current window's usage",
    tag="buckets",
    secured=_ADMIN,
    response=[
        {"status": 200, "content": {"application/json": BucketWithUsage}, "description": "found"},
        *_documented_errors((404, "no client has this id")),
    ],
)
async def read_bucket(request: Request, client_id: str) -> HTTPResponse:
    backend = backend_of(request)
    require_admin(request, backend.settings)
    canonical = _client_id(client_id)
    registry = _registry(backend)
    async with _cluster_call():
        record = await registry.read(canonical)
        if record is None:
            raise UnknownClient("unknown client id")
        usage = await current_usage(_strategy(backend), record)
    return json({**record.as_dict(), "usage": usage})


@openapi.definition(
    summary="Change a client's limit, window and/or window alignment",
    tag="buckets",
    body={"application/json": BucketUpdate},
    secured=_ADMIN,
    response=[
        {"status": 200, "content": {"application/json": Bucket}, "description": "updated"},
        *_documented_errors(*_BODY_ERRORS, (404, "no client has this id")),
        _FIELD_ERROR,
    ],
)
async def update_bucket(request: Request, client_id: str) -> HTTPResponse:
    backend = backend_of(request)
    require_admin(request, backend.settings)
    canonical = _client_id(client_id)
    change = validate_update(parse_object(request.body), backend.settings)
    registry = _registry(backend)
    async with _cluster_call():
        record = await registry.update(
            canonical,
            limit=change.limit,
            window_seconds=change.window_seconds,
            window_alignment=change.window_alignment,
        )
    if record is None:
        raise UnknownClient("unknown client id")
    return json(record.as_dict())


@openapi.definition(
    summary="Delete a client (its name becomes free)",
    tag="buckets",
    secured=_ADMIN,
    response=[
        {"status": 204, "content": {}, "description": "deleted"},
        *_documented_errors((404, "no client has this id")),
    ],
)
async def delete_bucket(request: Request, client_id: str) -> HTTPResponse:
    backend = backend_of(request)
    require_admin(request, backend.settings)
    canonical = _client_id(client_id)
    registry = _registry(backend)
    async with _cluster_call():
        record = await registry.delete(canonical)
    if record is None:
        raise UnknownClient("unknown client id")
    return empty()
