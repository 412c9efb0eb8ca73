"""Hostile clients at the front door: requests that stall half-way through their body
or headers, and floods of headers, against nginx. None of them reaches a replica, none
gets a 5xx, and the service answers everyone else meanwhile."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import Topology

#: nginx's client_body_timeout and client_header_timeout (nginx/nginx.conf.template).
NGINX_CLIENT_TIMEOUT_SECONDS = 10.0


async def _stall(port: int, partial: bytes) -> tuple[bytes, float]:
    """Sends ``partial`` (a request cut short) and then nothing; returns what nginx
    answered, or b"" if it hung up, and when."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(partial)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), NGINX_CLIENT_TIMEOUT_SECONDS * 3)
    except ConnectionError:
        answer = b""
    finally:
        writer.close()
    return answer, time.monotonic() - started


def test_stalled_bodies_and_headers_are_cut_off_and_others_are_served(
    topology: Topology,
) -> None:
    """Requests whose body or headers stop half-way are cut off by nginx at its client
    timeout (408 or a closed connection, never a 5xx, and the create never reaches a
    replica), while /health answers 200 to everyone else throughout. (nginx buffers a
    body before passing it on, so a slow client never holds a replica.)"""
    port = topology.stack.nginx_port
    name = f"stalled-body-{time.time_ns()}"
    body = b'{"name": "' + name.encode() + b'"}'
    stalled_body = (
        b"POST /bucket HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: {topology.admin['Authorization']}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    stalled_headers = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa"

    async def scenario() -> tuple[list[tuple[bytes, float]], list[int]]:
        statuses: list[int] = []
        stop = asyncio.Event()

        async def others() -> None:
            async with httpx.AsyncClient(base_url=topology.url, timeout=5) as http:
                while not stop.is_set():
                    statuses.append((await http.get("/health")).status_code)
                    await asyncio.sleep(0.2)

        background = asyncio.ensure_future(others())
        try:
            stalled = await asyncio.gather(
                *(_stall(port, stalled_body) for _ in range(20)),
                *(_stall(port, stalled_headers) for _ in range(20)),
            )
        finally:
            stop.set()
            await background
        return stalled, statuses

    stalled, statuses = asyncio.run(scenario())
    ends = sorted(round(seconds, 1) for _, seconds in stalled)
    answers = {answer.split(b"\r\n", 1)[0].decode(errors="replace") for answer, _ in stalled}
    print(
        f"\nstalled: cut off after {ends[0]}-{ends[-1]} s, answers {answers}; "
        f"/health meanwhile: {len(statuses)} x {set(statuses)}"
    )
    assert set(statuses) == {200}
    for answer, seconds in stalled:
        assert answer.split(b"\r\n", 1)[0] in (b"", b"HTTP/1.1 408 Request Time-out"), answer
        assert NGINX_CLIENT_TIMEOUT_SECONDS - 1 <= seconds <= NGINX_CLIENT_TIMEOUT_SECONDS + 5
    with httpx.Client(base_url=topology.url, timeout=10) as http:
        found = http.get("/bucket", params={"name": name}, headers=topology.admin)
    assert found.status_code == 404, "a stalled create must never reach a replica"


def test_header_floods_get_a_json_431_and_no_5xx(topology: Topology) -> None:
    """Fifty concurrent requests each carrying 1,000 headers (40 KB) are refused with
    nginx's JSON 431, and none is a 5xx."""

    async def flood() -> list[httpx.Response]:
        headers = {f"X-Flood-{i}": "v" * 30 for i in range(1000)}
        async with httpx.AsyncClient(base_url=topology.url, timeout=30) as http:
            return list(
                await asyncio.gather(*(http.get("/example", headers=headers) for _ in range(50)))
            )

    responses = asyncio.run(flood())
    statuses = {response.status_code for response in responses}
    print(f"\nheader floods: {len(responses)} x {statuses}")
    assert statuses == {431}
    assert all(response.json() == {"error": "request headers too large"} for response in responses)
