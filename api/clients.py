"""Client management: ``POST /bucket``, ``GET /bucket?name=``, ``GET|PATCH|DELETE /bucket/{id}``.

A *client* is what the original service, and so these paths, call a bucket: an id, a
unique name and its limits (a list of 1 to 8, each with its algorithm; or the single
form, a limit per window and the window's alignment: see :mod:`api.validation`).

Every route needs ``Authorization: Bearer <RATELIMIT_ADMIN_TOKEN>`` (403 while no token is
configured, 401 without the right one). A body is a JSON object of at most
``RATELIMIT_MAX_BODY_BYTES`` (413 above it); malformed JSON is 400, a bad field 422 naming
it. Each route waits at most :data:`MANAGEMENT_TIMEOUT_SECONDS` for the cluster, then
answers 503 with ``Retry-After``; a PATCH that keeps losing to concurrent changes of the
same client is a 409, not an outage.

The members write every create, change and delete through to PostgreSQL before they
apply it (see :mod:`registry.store`): while the database is away, POST, PATCH and DELETE
answer 503 ``{"error": "registry database unavailable: nothing was changed, ..."}`` with
``Retry-After`` and change nothing, while GET and the guarded routes, which read the
members' memory, go on answering.

A PATCH with ``limits`` replaces the whole list. A limit that keeps its name, algorithm
and window length keeps its usage (its value, alignment, burst or shadow flag may
change); any other starts empty. So changing ``window_seconds`` starts counting afresh in
windows of the new length; changing ``limit`` applies to the window in progress; changing
``window_alignment`` only moves where the next window opens (the window in progress runs
to its end). The single form changes the one limit of a client that has exactly one
fixed-window limit, and is a 422 on any other. Deleting a client leaves its counters to
expire with their window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sanic import Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import RequestBody

from api.auth import require_admin
from api.backend import Connection, backend_of
from api.docs import (
    Error,
    FieldError,
    client_name,
    client_record,
    client_update_body,
    client_with_usage,
    new_client_body,
)
from api.errors import ClusterUnavailable, InvalidField, UnknownClient
from api.settings import Settings
from api.usage import current_usage
from api.validation import parse_object, validate_create, validate_name, validate_update
from limiter import BackendError, cluster_call
from registry import parse_client_id

__all__ = [
    "MANAGEMENT_TIMEOUT_SECONDS",
    "create_client",
    "delete_client",
    "find_client",
    "read_client",
    "update_client",
]

#: Longest a management request waits for the cluster (a few round trips).
MANAGEMENT_TIMEOUT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1
#: The document states the default settings' bounds (names, limits, windows).
DOCUMENTED = Settings()


@contextlib.asynccontextmanager
async def _cluster(request: Request) -> AsyncIterator[Connection]:
    """The worker's connection for the cluster work of one management request, bounded
    by :data:`MANAGEMENT_TIMEOUT_SECONDS`; whatever keeps the cluster from answering
    (:func:`limiter.cluster_call` turns it into a ``BackendError``) is a 503."""
    deadline = asyncio.get_running_loop().time() + MANAGEMENT_TIMEOUT_SECONDS
    try:
        async with cluster_call(deadline):
            yield backend_of(request).require_connection()
    except BackendError as error:
        raise ClusterUnavailable(
            f"cluster unavailable ({error.kind}): {error}", RETRY_AFTER_SECONDS
        ) from None


def _client_id(raw: str) -> str:
    client_id = parse_client_id(raw)
    if client_id is None:
        raise UnknownClient("unknown client id")
    return client_id


_ADMIN: dict[str, list[str]] = {"admin": []}
_COMMON_ERRORS = (
    (401, "missing or wrong admin token"),
    (403, "client management disabled (no RATELIMIT_ADMIN_TOKEN)"),
    (
        503,
        "the cluster did not answer in time, or (POST, PATCH, DELETE) the registry "
        "database is unavailable; nothing was changed",
    ),
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
    summary="Create a client (name unique; limits, or one limit per window: settings' defaults)",
    tag="clients",
    body=RequestBody({"application/json": new_client_body(DOCUMENTED)}, required=True),
    secured=_ADMIN,
    response=[
        {"status": 201, "content": {"application/json": client_record()}, "description": "created"},
        *_documented_errors(*_BODY_ERRORS, (409, "the name is taken")),
        _FIELD_ERROR,
    ],
)
async def create_client(request: Request) -> HTTPResponse:
    settings = backend_of(request).settings
    require_admin(request, settings)
    new = validate_create(parse_object(request.body), settings)
    async with _cluster(request) as cluster:
        record = await cluster.registry.create(new.name, new.policy)
    return json(record.as_dict(), status=201, headers={"Location": f"/bucket/{record.id}"})


@openapi.definition(
    summary="The client holding a name: the way back when a create's answer was lost",
    tag="clients",
    secured=_ADMIN,
    parameter={
        "name": "name",
        "schema": client_name(DOCUMENTED),
        "location": "query",
        "required": True,
    },
    response=[
        {"status": 200, "content": {"application/json": client_record()}, "description": "found"},
        *_documented_errors((404, "no client has this name")),
        _FIELD_ERROR,
    ],
)
async def find_client(request: Request) -> HTTPResponse:
    settings = backend_of(request).settings
    require_admin(request, settings)
    names = request.args.getlist("name")
    if len(names) != 1:
        raise InvalidField("name", "give exactly one name query parameter")
    name = validate_name(names[0], settings)
    async with _cluster(request) as cluster:
        record = await cluster.registry.find(name)
    if record is None:
        raise UnknownClient("no client has this name")
    return json(record.as_dict())


@openapi.definition(
    summary="A client's record and the current usage of each of its limits",
    tag="clients",
    secured=_ADMIN,
    response=[
        {
            "status": 200,
            "content": {"application/json": client_with_usage()},
            "description": "found",
        },
        *_documented_errors((404, "no client has this id")),
    ],
)
async def read_client(request: Request, client_id: str) -> HTTPResponse:
    require_admin(request, backend_of(request).settings)
    canonical = _client_id(client_id)
    async with _cluster(request) as cluster:
        record = await cluster.registry.read(canonical)
        if record is None:
            raise UnknownClient("unknown client id")
        usage = await current_usage(cluster.strategy, record)
    return json({**record.as_dict(), "usage": usage})


@openapi.definition(
    summary="Replace a client's limits, or change the single form's limit, window, alignment",
    tag="clients",
    body=RequestBody({"application/json": client_update_body(DOCUMENTED)}, required=True),
    secured=_ADMIN,
    response=[
        {"status": 200, "content": {"application/json": client_record()}, "description": "updated"},
        *_documented_errors(
            *_BODY_ERRORS,
            (404, "no client has this id"),
            (409, "the client kept changing concurrently; try again"),
        ),
        _FIELD_ERROR,
    ],
)
async def update_client(request: Request, client_id: str) -> HTTPResponse:
    settings = backend_of(request).settings
    require_admin(request, settings)
    canonical = _client_id(client_id)
    change = validate_update(parse_object(request.body), settings)
    async with _cluster(request) as cluster:
        record = await cluster.registry.update(canonical, change.apply)
    if record is None:
        raise UnknownClient("unknown client id")
    return json(record.as_dict())


@openapi.definition(
    summary="Delete a client (its name becomes free)",
    tag="clients",
    secured=_ADMIN,
    response=[
        {"status": 204, "content": {}, "description": "deleted"},
        *_documented_errors((404, "no client has this id")),
    ],
)
async def delete_client(request: Request, client_id: str) -> HTTPResponse:
    require_admin(request, backend_of(request).settings)
    canonical = _client_id(client_id)
    async with _cluster(request) as cluster:
        record = await cluster.registry.delete(canonical)
    if record is None:
        raise UnknownClient("unknown client id")
    return empty()
