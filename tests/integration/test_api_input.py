"""The HTTP contract on one real replica: bad input, headers, seed compatibility, OpenAPI.

Print the bad-input table (input → status) with::

    .venv/bin/python -m tests.integration.test_api_input
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import socket
import time
import uuid
from typing import Any, NamedTuple

import pytest

from api import create_app
from api.settings import Settings
from limiter import window_start
from stack import LOOPBACK
from tests.cluster import quiet_window
from tests.cluster import test_settings as cluster_settings
from tests.integration.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    Replica,
    Replicas,
    create_client,
)

DEFAULTS = Settings()
EXISTING = "{existing}"  # replaced by the id of a client created for the table
UNKNOWN = "{unknown}"  # replaced by a well-formed id no client has
DUPLICATE = "taken-name"  # created once before the table runs


class Case(NamedTuple):
    label: str
    method: str
    path: str
    status: int
    body: bytes | None = None
    #: A list of pairs sends a header more than once.
    headers: dict[str, str] | list[tuple[str, str]] | None = None
    #: The field a 422 must name.
    field: str | None = None
    #: The replica: "main", or "no-admin" (started without RATELIMIT_ADMIN_TOKEN).
    on: str = "main"


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


def name_body(name: Any) -> bytes:
    return js({"name": name})


def cost(value: str) -> dict[str, str]:
    """The headers of a guarded request by an existing client with this cost."""
    return {"X-Api-Id": EXISTING, "X-RateLimit-Cost": value}


BAD_INPUTS = [
    # The guarded route.
    Case("no X-Api-Id", "GET", "/example", 401),
    Case("empty X-Api-Id", "GET", "/example", 401, headers={"X-Api-Id": ""}),
    Case("X-Api-Id not a UUID", "GET", "/example", 404, headers={"X-Api-Id": "client123"}),
    Case("X-Api-Id unknown", "GET", "/example", 404, headers={"X-Api-Id": UNKNOWN}),
    Case("X-Api-Id of 1000 chars", "GET", "/example", 404, headers={"X-Api-Id": "a" * 1000}),
    Case("headers over 8 KiB", "GET", "/example", 413, headers={"X-Api-Id": "a" * 9000}),
    Case("POST /example", "POST", "/example", 405),
    Case("DELETE /example", "DELETE", "/example", 405),
    Case("unknown path", "GET", "/nowhere", 404),
    # X-RateLimit-Cost (a whole number from 0 to RATELIMIT_MAX_COST) on both routes.
    Case("cost empty", "GET", "/example", 400, headers=cost("")),
    Case("cost -1", "GET", "/example", 400, headers=cost("-1")),
    Case("cost +1", "GET", "/example", 400, headers=cost("+1")),
    Case("cost 1.5", "GET", "/example", 400, headers=cost("1.5")),
    Case("cost 1e3", "GET", "/example", 400, headers=cost("1e3")),
    Case("cost word", "GET", "/example", 400, headers=cost("three")),
    Case("cost 1_0", "GET", "/example", 400, headers=cost("1_0")),
    Case("cost 1 0", "GET", "/example", 400, headers=cost("1 0")),
    Case("cost list", "GET", "/example", 400, headers=cost("1, 1")),
    Case("cost over max", "GET", "/example", 400, headers=cost(str(DEFAULTS.max_cost + 1))),
    Case("cost 10**30", "GET", "/example", 400, headers=cost(str(10**30))),
    Case(
        "cost twice, differing",
        "GET",
        "/example",
        400,
        headers=[("X-Api-Id", EXISTING), ("X-RateLimit-Cost", "1"), ("X-RateLimit-Cost", "2")],
    ),
    Case("/decide cost -1", "GET", "/decide", 400, headers=cost("-1")),
    Case("/decide cost over max", "GET", "/decide", 400, headers=cost(str(DEFAULTS.max_cost + 1))),
    # Authentication of the management routes.
    Case("no token", "POST", "/bucket", 401, name_body("a"), headers={}),
    Case("wrong token", "POST", "/bucket", 401, name_body("a"), {"Authorization": "Bearer no"}),
    Case("Basic auth", "POST", "/bucket", 401, name_body("a"), {"Authorization": "Basic eDp5"}),
    Case("bearer, no token", "POST", "/bucket", 401, name_body("a"), {"Authorization": "Bearer"}),
    Case("GET without token", "GET", f"/bucket/{EXISTING}", 401, headers={}),
    Case("management disabled", "POST", "/bucket", 403, name_body("a"), on="no-admin"),
    # Bodies that are not JSON objects.
    Case("empty body", "POST", "/bucket", 400, b""),
    Case("malformed JSON", "POST", "/bucket", 400, b'{"name": '),
    Case("not UTF-8", "POST", "/bucket", 400, b'{"name": "\xff\xfe"}'),
    Case("NaN", "POST", "/bucket", 400, b'{"name": "a", "limit": NaN}'),
    Case("nested 2000 deep", "POST", "/bucket", 400, b"[" * 2000 + b"]" * 2000),
    Case("JSON array", "POST", "/bucket", 422, b"[]", field="body"),
    Case("JSON string", "POST", "/bucket", 422, b'"name"', field="body"),
    Case("JSON null", "POST", "/bucket", 422, b"null", field="body"),
    Case(f"body over {DEFAULTS.max_body_bytes} B", "POST", "/bucket", 413, name_body("x" * 5000)),
    # Fields of a new client.
    Case("no name", "POST", "/bucket", 422, b"{}", field="name"),
    Case("name null", "POST", "/bucket", 422, name_body(None), field="name"),
    Case("name a number", "POST", "/bucket", 422, name_body(123), field="name"),
    Case("name empty", "POST", "/bucket", 422, name_body(""), field="name"),
    Case("name blank", "POST", "/bucket", 422, name_body("   "), field="name"),
    Case("name 65 chars", "POST", "/bucket", 422, name_body("n" * 65), field="name"),
    Case("name newline", "POST", "/bucket", 422, name_body("bad\nname"), field="name"),
    Case("name NUL", "POST", "/bucket", 422, name_body("bad\x00name"), field="name"),
    Case("name zero-width", "POST", "/bucket", 422, name_body("a\u200bb"), field="name"),
    Case("name RTL override", "POST", "/bucket", 422, name_body("a\u202eb"), field="name"),
    Case("name padded", "POST", "/bucket", 422, name_body(" padded"), field="name"),
    Case("name taken", "POST", "/bucket", 409, name_body(DUPLICATE)),
    Case("limit 0", "POST", "/bucket", 422, js({"name": "a", "limit": 0}), field="limit"),
    Case("limit -5", "POST", "/bucket", 422, js({"name": "a", "limit": -5}), field="limit"),
    Case("limit string", "POST", "/bucket", 422, js({"name": "a", "limit": "10"}), field="limit"),
    Case("limit 1.5", "POST", "/bucket", 422, js({"name": "a", "limit": 1.5}), field="limit"),
    Case("limit true", "POST", "/bucket", 422, js({"name": "a", "limit": True}), field="limit"),
    Case(
        "limit over max",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "limit": DEFAULTS.max_limit + 1}),
        field="limit",
    ),
    Case(
        "window 0",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "window_seconds": 0}),
        field="window_seconds",
    ),
    Case(
        "window over max",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "window_seconds": DEFAULTS.max_window_seconds + 1}),
        field="window_seconds",
    ),
    Case(
        "window 1e30",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "window_seconds": 10**30}),
        field="window_seconds",
    ),
    Case("unknown field", "POST", "/bucket", 422, js({"name": "a", "burst": 5}), field="burst"),
    Case(
        "alignment unknown",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "window_alignment": "sliding"}),
        field="window_alignment",
    ),
    Case(
        "alignment not text",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "window_alignment": 1}),
        field="window_alignment",
    ),
    Case("PUT /bucket", "PUT", "/bucket", 405, name_body("a")),
    Case("GET /bucket without name", "GET", "/bucket", 422, field="name"),
    Case("GET /bucket, two names", "GET", "/bucket?name=a&name=b", 422, field="name"),
    Case("GET /bucket, blank name", "GET", "/bucket?name=%20", 422, field="name"),
    Case(
        "limits and limit",
        "POST",
        "/bucket",
        422,
        js({"name": "a", "limit": 5, "limits": [{"name": "a"}]}),
        field="limits",
    ),
    Case("limits empty", "POST", "/bucket", 422, js({"name": "a", "limits": []}), field="limits"),
    Case(
        "limits: burst of a fixed window",
        "POST",
        "/bucket",
        422,
        js(
            {
                "name": "a",
                "limits": [
                    {"name": "a", "algorithm": "gcra", "limit": 2, "window_seconds": 60},
                    {
                        "name": "b",
                        "algorithm": "fixed_window",
                        "limit": 2,
                        "window_seconds": 60,
                        "burst": 1,
                    },
                ],
            }
        ),
        field="limits[1].burst",
    ),
    Case(
        "limits: shadow only",
        "POST",
        "/bucket",
        422,
        js(
            {
                "name": "a",
                "limits": [
                    {
                        "name": "a",
                        "algorithm": "sliding_window",
                        "limit": 2,
                        "window_seconds": 60,
                        "shadow": True,
                    }
                ],
            }
        ),
        field="limits",
    ),
    Case("GET /bucket, unknown name", "GET", f"/bucket?name={UNKNOWN}", 404),
    Case("GET /bucket?name= without token", "GET", "/bucket?name=a", 401, headers={}),
    # One client.
    Case("id not a UUID", "GET", "/bucket/not-a-uuid", 404),
    Case("id unknown", "GET", f"/bucket/{UNKNOWN}", 404),
    Case("PATCH unknown", "PATCH", f"/bucket/{UNKNOWN}", 404, js({"limit": 5})),
    Case("DELETE unknown", "DELETE", f"/bucket/{UNKNOWN}", 404),
    Case("PUT one", "PUT", f"/bucket/{EXISTING}", 405, js({"limit": 5})),
    Case("PATCH malformed", "PATCH", f"/bucket/{EXISTING}", 400, b"{limit"),
    Case("PATCH empty object", "PATCH", f"/bucket/{EXISTING}", 422, b"{}", field="body"),
    Case("PATCH name", "PATCH", f"/bucket/{EXISTING}", 422, name_body("new"), field="name"),
    Case("PATCH limit 0", "PATCH", f"/bucket/{EXISTING}", 422, js({"limit": 0}), field="limit"),
    Case(
        "PATCH limit null", "PATCH", f"/bucket/{EXISTING}", 422, js({"limit": None}), field="limit"
    ),
    Case(
        "PATCH alignment null",
        "PATCH",
        f"/bucket/{EXISTING}",
        422,
        js({"window_alignment": None}),
        field="window_alignment",
    ),
    Case(
        "PATCH limits and window",
        "PATCH",
        f"/bucket/{EXISTING}",
        422,
        js({"window_seconds": 5, "limits": []}),
        field="limits",
    ),
    Case(
        "PATCH window -1",
        "PATCH",
        f"/bucket/{EXISTING}",
        422,
        js({"window_seconds": -1}),
        field="window_seconds",
    ),
]


def _pairs(headers: dict[str, str] | list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, dict) else headers


def table() -> str:
    """The bad-input table, one line per case: method, path, body, headers → status."""
    lines = []
    for case in BAD_INPUTS:
        body = "" if case.body is None else case.body[:40].decode("utf-8", "backslashreplace")
        names = [] if case.headers is None else [name for name, *_ in _pairs(case.headers)]
        headers = ",".join(names)
        where = "" if case.on == "main" else f" [{case.on}]"
        field = f" field={case.field}" if case.field else ""
        lines.append(
            f"{case.status}{field:<22} {case.label:<22} {case.method:<6} {case.path:<20} "
            f"{headers:<14} {body!r}{where}"
        )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def no_admin(replicas: Replicas) -> Replica:
    """A replica started without RATELIMIT_ADMIN_TOKEN: management disabled."""
    return replicas.start("no-admin", admin_token="")


@pytest.fixture(scope="module")
def existing(replica: Replica) -> str:
    """The id of a client the table's PATCH/PUT cases aim at; also takes DUPLICATE."""
    create_client(replica, DUPLICATE)
    return str(create_client(replica)["id"])


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.label for c in BAD_INPUTS])
def test_bad_input_gets_its_status_and_a_json_error(
    case: Case, replica: Replica, existing: str, request: pytest.FixtureRequest
) -> None:
    """Each bad input gets exactly its status and {"error": ...}; a 422 names the field."""
    target = replica if case.on == "main" else request.getfixturevalue("no_admin")
    path = case.path.replace(EXISTING, existing).replace(UNKNOWN, str(uuid.uuid4()))
    headers = [
        (key, value.replace(UNKNOWN, str(uuid.uuid4())).replace(EXISTING, existing))
        for key, value in _pairs(ADMIN if case.headers is None else case.headers)
    ]
    response = target.request(case.method, path, content=case.body, headers=headers)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    if case.field is not None:
        assert body["field"] == case.field
        assert body["error"].startswith(f"{case.field}:")
    if any(name == "X-RateLimit-Cost" for name, _ in headers) and case.status == 400:
        assert body["error"].startswith("X-RateLimit-Cost:")
        assert response.headers["x-ratelimit-invalid"] == "X-RateLimit-Cost"


def test_the_table_covers_every_status_the_contract_names() -> None:
    """The bad-input table drives 400, 401, 403, 404, 405, 409, 413 and 422."""
    assert {c.status for c in BAD_INPUTS} == {400, 401, 403, 404, 405, 409, 413, 422}
    print("\n" + table())


def test_seed_compatible_create_and_guarded_route(replica: Replica) -> None:
    """POST /bucket {"name"} gives 201 with a UUID4 id and the 100/60 s defaults, and
    GET /example with that id answers {"message": "Hello World"}."""
    name = f"seed-{uuid.uuid4().hex[:8]}"
    response = replica.request("POST", "/bucket", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201
    record = response.json()
    assert record["name"] == name
    assert uuid.UUID(record["id"]).version == 4
    assert (record["limit"], record["window_seconds"]) == (100, 60)
    assert record["window_alignment"] == "first_request"  # RATELIMIT_DEFAULT_WINDOW_ALIGNMENT
    assert response.headers["location"] == f"/bucket/{record['id']}"
    guarded = replica.get("/example", headers={"X-Api-Id": record["id"]})
    assert guarded.status_code == 200
    assert guarded.json() == {"message": "Hello World"}


def test_headers_on_admitted_and_limited_responses(replica: Replica) -> None:
    """200s carry RateLimit-Policy, RateLimit and X-RateLimit-*; the 429 adds Retry-After,
    and GET /bucket/{id} reports the window's usage."""
    window = quiet_window()
    client = create_client(replica, limit=3, window_seconds=window)
    headers = {"X-Api-Id": client["id"]}
    for remaining in (2, 1, 0):
        response = replica.get("/example", headers=headers)
        assert response.status_code == 200
        reset = int(response.headers["x-ratelimit-reset"])
        assert 1 <= reset <= window
        assert response.headers["ratelimit-policy"] == f'"default";q=3;w={window}'
        assert response.headers["ratelimit"] == f'"default";r={remaining};t={reset}'
        assert response.headers["x-ratelimit-limit"] == "3"
        assert response.headers["x-ratelimit-remaining"] == str(remaining)
        assert "retry-after" not in response.headers
    limited = replica.get("/example", headers=headers)
    assert limited.status_code == 429
    assert limited.json() == {"error": "rate limit exceeded"}
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["retry-after"] == limited.headers["x-ratelimit-reset"]
    assert limited.headers["ratelimit"] == f'"default";r=0;t={limited.headers["retry-after"]}'

    usage = replica.get(f"/bucket/{client['id']}", headers=ADMIN)
    assert usage.status_code == 200
    assert usage.json()["usage"]["used"] == 3
    assert usage.json()["usage"]["remaining"] == 0


def test_retry_after_never_points_before_the_window_end(replica: Replica) -> None:
    """On a 2 s clock-aligned window, a 429's Retry-After, counted from its arrival,
    reaches the end of the window it was decided in, and overshoots by less than the
    one-second rounding."""
    client = create_client(replica, limit=1, window_seconds=2, window_alignment="clock")
    headers = {"X-Api-Id": client["id"]}
    checked = 0
    for _ in range(60):
        sent_ms = time.time_ns() // 1_000_000
        response = replica.get("/example", headers=headers)
        arrived_ms = time.time_ns() // 1_000_000
        if response.status_code != 429 or window_start(sent_ms, 2) != window_start(arrived_ms, 2):
            continue  # admitted, or sent and answered in two windows: the window is unknown
        window_end_ms = window_start(sent_ms, 2) + 2000
        retry_after = int(response.headers["retry-after"])
        assert arrived_ms + retry_after * 1000 >= window_end_ms
        assert sent_ms + retry_after * 1000 < window_end_ms + 1000
        checked += 1
    assert checked >= 10


def test_retry_after_counts_to_the_end_of_a_first_request_window(replica: Replica) -> None:
    """On a 2 s first_request window, a 429's Retry-After reaches the end of the window
    its client's last admitted request opened (2 s after it), never the clock's edge, and
    overshoots by less than the one-second rounding."""
    client = create_client(replica, limit=1, window_seconds=2, window_alignment="first_request")
    headers = {"X-Api-Id": client["id"]}
    opened: tuple[int, int] | None = None  # (sent, arrived) of the request that opened it
    checked = admitted = 0
    # Until a window has ended and reopened (2 s at least), however fast the answers come.
    deadline = time.monotonic() + 20
    while (checked < 10 or admitted < 2) and time.monotonic() < deadline:
        sent_ms = time.time_ns() // 1_000_000
        response = replica.get("/example", headers=headers)
        arrived_ms = time.time_ns() // 1_000_000
        if response.status_code == 200:
            opened, admitted = (sent_ms, arrived_ms), admitted + 1
            continue
        assert response.status_code == 429, response.text
        assert opened is not None, "a first request was denied"
        # The window ends 2 s after its opening request was decided: within these bounds.
        earliest_end, latest_end = opened[0] + 2000, opened[1] + 2000
        assert sent_ms < latest_end, "denied although its window had surely ended"
        retry_after = int(response.headers["retry-after"])
        assert arrived_ms + retry_after * 1000 >= earliest_end
        assert sent_ms + retry_after * 1000 < latest_end + 1000
        checked += 1
    assert checked >= 10
    assert admitted >= 2  # windows ended and reopened at a request, not at a clock edge


def test_window_alignment_is_set_shown_and_changed(replica: Replica) -> None:
    """POST /bucket takes window_alignment, GET /bucket/{id} shows it with the usage of a
    window that opened at the first request, and PATCH changes it alone."""
    client = create_client(replica, limit=5, window_seconds=3600, window_alignment="clock")
    assert client["window_alignment"] == "clock"
    path = f"/bucket/{client['id']}"
    patched = replica.request(
        "PATCH", path, json={"window_alignment": "first_request"}, headers=ADMIN
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["window_alignment"], patched.json()["limit"]) == ("first_request", 5)
    sent_ms = time.time_ns() // 1_000_000
    assert replica.get("/example", headers={"X-Api-Id": client["id"]}).status_code == 200
    shown = replica.get(path, headers=ADMIN).json()
    assert shown["window_alignment"] == "first_request"
    assert shown["usage"]["used"] == 1
    opened = datetime.datetime.fromisoformat(shown["usage"]["window_start"])
    # Opened by that request, not at the hour's edge (which is its start only 1 in 3600).
    assert abs(opened.timestamp() * 1000 - sent_ms) < 5000
    assert 3590 <= shown["usage"]["reset_after_seconds"] <= 3600


def test_the_openapi_document_lists_every_route(replica: Replica) -> None:
    """/docs/openapi.json documents every route and method the application serves."""
    # As the replica runs: its rate limit service, and the service's bridge routes, off
    # (test_rls_grpc checks those routes in the document of a replica that has them).
    settings = dataclasses.replace(cluster_settings(), grpc_port=0)
    app = create_app(settings, name=f"openapi-check-{uuid.uuid4().hex[:8]}")
    served = {
        ("/" + route.path.replace("<client_id:str>", "{client_id}"), method.lower())
        for route in app.router.routes
        for method in route.methods
    }
    document = replica.get("/docs/openapi.json").json()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served <= documented
    assert ("/docs/openapi.json", "get") in documented
    assert {("/example", "get"), ("/bucket", "post"), ("/metrics", "get")} <= served
    for path, method in documented:
        assert document["paths"][path][method]["responses"], (path, method)
    created = document["paths"]["/bucket"]["post"]["requestBody"]["content"]["application/json"]
    single_form = created["schema"]["oneOf"][0]
    alignment = single_form["properties"]["window_alignment"]
    assert alignment["enum"] == ["clock", "first_request"]
    security = document["components"]["securitySchemes"]["admin"]
    assert security == {"type": "http", "scheme": "bearer"}


def test_the_openapi_document_lists_the_cost_header_on_both_guarded_routes(
    replica: Replica,
) -> None:
    """/example and /decide document X-RateLimit-Cost: an optional header, an integer from
    0 to RATELIMIT_MAX_COST's default, and their 400."""
    document = replica.get("/docs/openapi.json").json()
    for path in ("/example", "/decide"):
        operation = document["paths"][path]["get"]
        (cost,) = [p for p in operation["parameters"] if p["name"] == "X-RateLimit-Cost"]
        assert (cost["in"], cost.get("required", False)) == ("header", False)
        schema = cost["schema"]
        assert (schema["type"], schema["minimum"], schema["maximum"]) == (
            "integer",
            0,
            DEFAULTS.max_cost,
        )
        assert "400" in operation["responses"]


def test_a_wrong_token_is_refused_like_no_token(replica: Replica) -> None:
    """A token that differs only in its last character is refused with 401 and a
    WWW-Authenticate challenge; the right one passes."""
    wrong = {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}X"}
    unknown = f"/bucket/{uuid.uuid4()}"
    refused = replica.get(unknown, headers=wrong)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert replica.get(unknown, headers=ADMIN).status_code == 404


def test_a_request_that_is_not_http_gets_a_json_400(replica: Replica) -> None:
    """Garbage instead of a request line is answered 400 {"error": ...}, not 500."""
    with socket.create_connection((LOOPBACK, replica.port), timeout=10) as conn:
        conn.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400", received
    assert isinstance(json.loads(body)["error"], str)


if __name__ == "__main__":
    print(table())


def test_a_client_whose_create_answer_was_lost_is_found_by_name(replica: Replica) -> None:
    """When a create's 201 is lost, the retry gets 409, and GET /bucket?name= gives the
    client (its id included) to the admin."""
    name = f"lost-{uuid.uuid4().hex[:8]} é"
    created = create_client(replica, name)
    retried = replica.request("POST", "/bucket", json={"name": name}, headers=ADMIN)
    assert retried.status_code == 409
    found = replica.get("/bucket", params={"name": name}, headers=ADMIN)
    assert found.status_code == 200, found.text
    assert found.json() == created
    replica.request("DELETE", f"/bucket/{created['id']}", headers=ADMIN)
    gone = replica.get("/bucket", params={"name": name}, headers=ADMIN)
    assert gone.status_code == 404
