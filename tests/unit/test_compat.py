"""Each private hook of :mod:`compat` still finds what it needs in the installed version of
its dependency, so an upgrade that breaks one fails here, loudly, before a service runs."""

from __future__ import annotations

import asyncio
import importlib.metadata

import pytest
from hazelcast.asyncio import HazelcastClient
from hazelcast.errors import HazelcastClientNotActiveError, IllegalStateError
from hazelcast.internal.asyncio_listener import _ListenerRegistration
from prometheus_client import CollectorRegistry, Histogram

import compat

pytestmark = pytest.mark.unit


def offline_client() -> HazelcastClient:
    """A client pointed at a port nobody listens on, never started (needs a running loop)."""
    return HazelcastClient(cluster_members=["127.0.0.1:1"], cluster_connect_timeout=0.2)


def test_start_client_runs_the_clients_own_start() -> None:
    """start_client awaits the real start, which gives up at the connect timeout."""

    async def start() -> None:
        client = offline_client()
        try:
            with pytest.raises(IllegalStateError, match="Unable to connect"):
                await compat.start_client(client)
        finally:
            await client.shutdown()

    asyncio.run(start())


def test_connection_listener_and_listener_registrations_are_reachable() -> None:
    """The connection listener hook takes both callbacks by name, and a listener's
    connections and the client's open ones are read where the client keeps them."""

    async def check() -> None:
        client = offline_client()
        compat.add_connection_listener(client, lambda *_: None, lambda *_: None)
        assert dict(compat.active_connections(client)) == {}
        with pytest.raises(KeyError):
            compat.listener_connections(client, "no-such-registration")
        client._listener_service._active_registrations["r"] = _ListenerRegistration(
            None, None, None, None
        )
        assert dict(compat.listener_connections(client, "r")) == {}
        await client.shutdown()

    asyncio.run(check())


def test_create_map_on_cluster_reaches_the_invocation_service() -> None:
    """The create-proxy call is encoded and handed to the invocation service, which
    refuses it only because the client is not started."""

    async def create() -> None:
        client = offline_client()
        with pytest.raises(HazelcastClientNotActiveError):
            await compat.create_map_on_cluster(client, "m")
        await client.shutdown()

    asyncio.run(create())


def test_a_sibling_map_shares_its_proxys_client() -> None:
    """map_on_same_client names the new map and keeps the proxy's client context."""

    async def check() -> None:
        client = offline_client()
        first = compat.map_on_same_client(_ProxyOf(client), "first")
        second = compat.map_on_same_client(first, "second")
        assert (first.name, second.name) == ("first", "second")
        assert second.service_name == compat.MAP_SERVICE
        assert second._context is first._context is client._context
        await client.shutdown()

    asyncio.run(check())


class _ProxyOf:
    """What map_on_same_client reads of a proxy: its client's context."""

    def __init__(self, client: HazelcastClient) -> None:
        self._context = client._context


def test_histogram_internals_match_what_observe_counts() -> None:
    """The bounds, sum and bucket values are those Histogram.observe writes: one
    observation through the client shows in the values the hooks return."""
    histogram = Histogram("h", "h", buckets=(0.1, 1.0), registry=CollectorRegistry())
    bounds = compat.histogram_upper_bounds(histogram)
    assert list(bounds) == [0.1, 1.0, float("inf")]
    histogram.observe(0.5)
    assert compat.histogram_sum(histogram).get() == 0.5
    buckets = compat.histogram_buckets(histogram)
    assert [value.get() for value in buckets] == [0.0, 1.0, 0.0]
    compat.histogram_sum(histogram).inc(1.0)
    buckets[0].inc(1.0)
    assert compat.histogram_sum(histogram).get() == 1.5


def test_the_openapi_operation_takes_its_id_and_app() -> None:
    """name_openapi_operation sets the id the built operation carries, and its app."""

    def handler() -> None: ...

    app = object()
    operation = compat.name_openapi_operation(handler, "get~handler", app)
    assert operation._app is app
    assert operation._build_merged_dict()["operationId"] == "get~handler"


@pytest.mark.parametrize(
    ("distribution", "checked"),
    [
        ("hazelcast-python-client", "5.7."),
        ("prometheus-client", "0.26."),
        ("sanic-ext", "25.12."),
        ("sanic", "25.12."),
    ],
)
def test_installed_versions_are_the_checked_ones(distribution: str, checked: str) -> None:
    """Each dependency whose private API compat uses is the version its hooks were checked
    against (compat.py's docstrings), so a new one is checked before it is used."""
    assert importlib.metadata.version(distribution).startswith(checked)
