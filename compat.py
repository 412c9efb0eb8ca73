"""Every use of a dependency's private API, in one place.

The service reaches past the public API of three dependencies where that API lacks
something it needs (named in each function's docstring). Each such reach is a small
function here, with the version range it was checked against; ``pyproject.toml`` pins
each of those dependencies below the next version not yet checked, and
``tests/unit/test_compat.py`` fails if the installed version no longer has what a
function needs. Upgrading one: raise its pin, run that test, adapt the function.

Top-level so that ``limiter`` (which must not import ``api`` or Sanic) and ``api`` can
both import it; sanic-ext is imported inside the one function that needs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from hazelcast.internal.asyncio_invocation import Invocation
from hazelcast.internal.asyncio_proxy.map import Map as AsyncioMap
from hazelcast.protocol.codec import client_create_proxy_codec

__all__ = [
    "MAP_SERVICE",
    "active_connections",
    "add_connection_listener",
    "create_map_on_cluster",
    "histogram_buckets",
    "histogram_sum",
    "histogram_upper_bounds",
    "listener_connections",
    "map_on_same_client",
    "name_openapi_operation",
    "start_client",
]

#: The cluster's name for the map service (as ``hazelcast.proxy.MAP_SERVICE``).
MAP_SERVICE = "hz:impl:mapService"


# hazelcast-python-client, asyncio client: checked against 5.7.0 (pinned <5.8).


def start_client(client: Any) -> Awaitable[None]:
    """The client's start (connect, then wait for the member list), as an awaitable.

    ``HazelcastClient.create_and_start`` awaits it with no bound of its own when
    ``cluster_connect_timeout`` is -1 (which later reconnections need); awaiting it
    directly lets the caller bound the first connection."""
    start: Callable[[], Awaitable[None]] = client._start
    return start()


def add_connection_listener(
    client: Any, on_opened: Callable[..., None], on_closed: Callable[..., None]
) -> None:
    """Calls ``on_opened``/``on_closed`` with each connection to a member that opens or
    closes: the client says so publicly only for the cluster as a whole, and the registry
    memo must know when one member's events may have been missed."""
    client._connection_manager.add_listener(
        on_connection_opened=on_opened, on_connection_closed=on_closed
    )


def listener_connections(client: Any, registration: str) -> Collection[Any]:
    """The connections the listener ``registration`` is registered on (raises
    ``KeyError`` for an unknown registration): no public call says whether a listener
    reaches every member."""
    registered: Collection[Any] = client._listener_service._active_registrations[
        registration
    ].connection_registrations
    return registered


def active_connections(client: Any) -> Mapping[Any, Any]:
    """The client's open connections, by member uuid (see :func:`listener_connections`)."""
    connections: Mapping[Any, Any] = client._connection_manager.active_connections
    return connections


async def create_map_on_cluster(client: Any, name: str) -> None:
    """Creates the map ``name`` on the cluster, as ``get_map`` does the first time only:
    after a restart of the whole cluster the client's proxies exist on no member, and the
    client (unlike the Java one) does not create them again."""
    request = client_create_proxy_codec.encode_request(name, MAP_SERVICE)  # type: ignore[no-untyped-call]  # untyped upstream
    invocation = Invocation(request)  # type: ignore[no-untyped-call]  # untyped upstream
    await client._invocation_service.ainvoke(invocation)


def map_on_same_client(proxy: Any, name: str) -> Any:
    """The map ``name`` on the client of the map proxy ``proxy``, without a round trip:
    ``get_map`` is a coroutine and asks the cluster, while a strategy is built
    synchronously over the one map it is handed."""
    return AsyncioMap(MAP_SERVICE, name, proxy._context)  # type: ignore[no-untyped-call]  # untyped upstream


# prometheus-client: checked against 0.26.0 (pinned <0.27).


def histogram_upper_bounds(histogram: Any) -> Sequence[float]:
    """A histogram child's bucket bounds, ``+Inf`` last: a worker sums observations
    itself and writes them in bulk (``api.metrics.Tally``), which needs the bucket
    ``Histogram.observe`` would pick; the bounds are not public."""
    bounds: Sequence[float] = histogram._upper_bounds
    return bounds


def histogram_sum(histogram: Any) -> Any:
    """A histogram child's sum value (with ``inc``), written in bulk as above."""
    return histogram._sum


def histogram_buckets(histogram: Any) -> Sequence[Any]:
    """A histogram child's bucket values (each with ``inc``, not cumulative), in the
    order of :func:`histogram_upper_bounds`, written in bulk as above."""
    buckets: Sequence[Any] = histogram._buckets
    return buckets


# sanic-ext (with sanic): checked against sanic-ext 25.12.0 and sanic 25.12.1 (pinned <26).


def name_openapi_operation(handler: Callable[..., Any], operation_id: str, app: Any) -> Any:
    """The OpenAPI operation of ``handler``, with ``operation_id`` as its default id and
    bound to ``app``: Sanic Extensions leaves the document's own route out of the
    document, and adding it by hand needs an operation with what its route would have
    given it."""
    from sanic_ext.extensions.openapi.builders import OperationStore

    operation = OperationStore()[handler]  # type: ignore[no-untyped-call]  # untyped upstream
    if not hasattr(operation, "_app"):
        raise AttributeError("sanic-ext's OperationBuilder has no _app any more")
    operation._default["operationId"] = operation_id
    operation._app = app
    return operation
