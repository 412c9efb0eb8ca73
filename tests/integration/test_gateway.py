"""Gateway mode: nginx asks the API's /decide (auth_request) before passing a request to
an arbitrary upstream, so the limiter protects an app that knows nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.cluster import DEFAULT_STRATEGY, quiet_window
from tests.conftest import Topology

LIMIT = 5
REQUESTS = 17


def upstream_hits(topology: Topology) -> int:
    """Requests the protected app (Python's http.server) has logged so far."""
    log = topology.stack.log_path("demo-app").read_text(errors="replace")
    return log.count('"GET / HTTP/1.1" 200')


@pytest.mark.parametrize("strategy", ["entry_processor", "lock"])
def test_gateway_admits_exactly_the_limit_to_any_upstream(
    strategy: str, topology: Topology
) -> None:
    """Of concurrent requests to /gateway/, exactly `limit` reach the upstream (200 with its
    body and the rate-limit headers); every other one is a 429 with Retry-After."""
    topology.use(strategy)
    window = quiet_window()  # never straddles a window edge, whatever the time of day
    with httpx.Client(base_url=topology.url, timeout=30) as http:
        created = http.post(
            "/bucket",
            json={"name": f"gw-{uuid.uuid4().hex}", "limit": LIMIT, "window_seconds": window},
            headers=topology.admin,
        )
        assert created.status_code == 201, created.text
    client_id = created.json()["id"]
    before = upstream_hits(topology)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=topology.url, timeout=30) as http:
            return list(
                await asyncio.gather(
                    *(
                        http.get("/gateway/", headers={"X-Api-Id": client_id})
                        for _ in range(REQUESTS)
                    )
                )
            )

    responses = asyncio.run(fire())
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: LIMIT, 429: REQUESTS - LIMIT}
    for response in responses:
        assert response.headers["RateLimit-Policy"] == f'"default";q={LIMIT};w={window}'
        assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert "X-Request-Id" in response.headers
        if response.status_code == 200:
            assert response.json() == {"message": "hello from the protected app"}
        else:
            assert response.json() == {"error": "rate limit exceeded"}
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert int(response.headers["Retry-After"]) >= 1
    assert upstream_hits(topology) - before == LIMIT


def test_gateway_passes_the_callers_cost_and_refuses_a_malformed_one(
    topology: Topology,
) -> None:
    """The caller's X-RateLimit-Cost reaches /decide through auth_request: a cost of the
    whole limit passes; a malformed cost, or a peek (cost 0, which would reach the app
    uncounted), is a 400 JSON naming the header; none of those reach the upstream but the
    first."""
    topology.use(DEFAULT_STRATEGY)
    with httpx.Client(base_url=topology.url, timeout=30) as http:
        created = http.post(
            "/bucket",
            json={"name": f"gw-cost-{uuid.uuid4().hex}", "limit": LIMIT},
            headers=topology.admin,
        )
        assert created.status_code == 201, created.text
        client_id = created.json()["id"]
        before = upstream_hits(topology)

        def send(cost: str) -> httpx.Response:
            return http.get("/gateway/", headers={"X-Api-Id": client_id, "X-RateLimit-Cost": cost})

        whole = send(str(LIMIT))
        assert whole.status_code == 200, whole.text
        assert whole.headers["X-RateLimit-Remaining"] == "0"
        for value in ("-1", "1001", "one", "0", "00"):
            refused = send(value)
            assert refused.status_code == 400, (value, refused.text)
            assert refused.headers["content-type"] == "application/json"
            assert refused.json() == {"error": "malformed X-RateLimit-Cost header"}
            assert refused.headers["X-RateLimit-Invalid"] == "X-RateLimit-Cost"
    assert upstream_hits(topology) - before == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Api-Id": str(uuid.uuid4())}, 401), ({"X-Api-Id": "not-an-id"}, 401)],
)
def test_gateway_refuses_callers_it_cannot_name(
    headers: dict[str, str], status: int, topology: Topology
) -> None:
    """No X-Api-Id, or one no client has: 401 as JSON, and the upstream is not reached."""
    before = upstream_hits(topology)
    response = httpx.get(f"{topology.url}/gateway/", headers=headers, timeout=30)
    assert response.status_code == status
    assert "error" in response.json()
    assert upstream_hits(topology) == before


def test_nginx_fails_over_when_a_replica_dies(topology: Topology) -> None:
    """With one replica killed, every idempotent request through nginx still succeeds:
    nginx passes it to the next replica."""
    topology.stack.kill(topology.stack.replica_name(0))
    try:
        with httpx.Client(base_url=topology.url, timeout=30) as http:
            statuses = Counter(http.get("/ready").status_code for _ in range(30))
        assert statuses == {200: 30}
    finally:
        topology.restore_replicas()


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"method": "POST", "url": "/bucket", "content": b"x" * 5000}, 413),
        ({"method": "GET", "url": "/example", "headers": {"X-Api-Id": "a" * 9000}}, 431),
    ],
)
def test_nginx_refuses_oversized_requests_with_json(
    request_kwargs: dict[str, object], status: int, topology: Topology
) -> None:
    """nginx's own limits (4 KiB bodies, 8 KiB header lines) answer JSON like the API."""
    with httpx.Client(base_url=topology.url, timeout=30) as http:
        response = http.request(**request_kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()


class SwallowingUpstream:
    """Stands in for a replica that receives a request and dies before answering: reads
    each request, counts it, and closes the connection without a response."""

    def __init__(self, port: int) -> None:
        self.received = 0
        self._server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SwallowingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = connection.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                # Only guarded requests: Prometheus also scrapes this port.
                self.received += data.startswith((b"GET /example", b"GET /decide"))


@pytest.mark.parametrize("path", ["/example", "/example/", "/decide"])
def test_a_guarded_request_is_never_sent_twice(path: str, topology: Topology) -> None:
    """A replica that takes a guarded request and dies before answering: nginx answers 503
    JSON and does not pass the request to another replica, where it would count again."""
    topology.use(DEFAULT_STRATEGY)
    window = quiet_window()
    created = httpx.post(
        f"{topology.url}/bucket",
        json={"name": f"once-{uuid.uuid4().hex}", "limit": 1000, "window_seconds": window},
        headers=topology.admin,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    client_id = created.json()["id"]
    statuses: Counter[int] = Counter()
    topology.stack.kill(topology.stack.replica_name(0))
    try:
        with SwallowingUpstream(topology.stack.replica_port(0)) as dead:
            # Until the dead replica has taken a few (nginx may first leave it out for a
            # while after the failures the kill itself caused), within a deadline.
            deadline = time.monotonic() + 30
            with httpx.Client(base_url=topology.url, timeout=30) as http:
                while dead.received < 2 and time.monotonic() < deadline:
                    response = http.get(path, headers={"X-Api-Id": client_id})
                    statuses[response.status_code] += 1
                    time.sleep(0.05)  # paces the requests so the wait spans fail_timeout
            swallowed = dead.received
    finally:
        topology.restore_replicas()
    requests = sum(statuses.values())
    usage = httpx.get(
        f"{topology.url}/bucket/{client_id}", headers=topology.admin, timeout=30
    ).json()["usage"]
    print(f"\n{path}: {dict(statuses)}, swallowed {swallowed}, counted {usage['used']}")
    assert swallowed >= 2
    assert statuses[503] == swallowed
    assert usage["used"] + swallowed == requests


def test_gateway_without_any_replica_answers_json_503(topology: Topology) -> None:
    """With every replica gone, gateway mode answers 503 JSON (not nginx's HTML 500), and
    the protected app is not reached."""
    before = upstream_hits(topology)
    topology.stack.stop([topology.stack.replica_name(i) for i in range(topology.REPLICAS)])
    try:
        response = httpx.get(
            f"{topology.url}/gateway/", headers={"X-Api-Id": str(uuid.uuid4())}, timeout=30
        )
    finally:
        topology.restore_replicas()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "no API replica available"}
    assert upstream_hits(topology) == before
