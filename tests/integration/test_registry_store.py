"""The client registry's durable copy in PostgreSQL, on a cluster and a database of their
own (so stopping either leaves the session's alone): every client survives a restart of
every member, and while the database is away management writes answer 503 and change
nothing, in memory or on disk, while the guarded route goes on deciding."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stack import Stack
from tests.cluster import MEMBERS, quiet_window
from tests.integration.conftest import ADMIN, MAPS, Replica, Replicas, create_client

#: Clients created before the restart.
CLIENTS = 200
#: Fields that must come back exactly as they were written.
FIELDS = ("id", "name", "limit", "window_seconds", "window_alignment", "created_at", "limits")


@pytest.fixture(scope="module")
def durable(cluster: Stack) -> Iterator[Stack]:
    """Three members 80 ports above the session's and a PostgreSQL 5 above its own,
    starting from an empty registry table; everything stopped at the end."""
    layout = cluster.layout.shifted(80, database_port=cluster.layout.database_port + 5)
    own = cluster.beside("durable", layout)
    try:
        own.start_database()
        own.sql("DROP TABLE IF EXISTS ratelimit_registry")
        own.start_members(MEMBERS)
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
def replica(replicas: Replicas, durable: Stack) -> Replica:
    """One replica on the durable cluster, with this session's map names."""
    return replicas.start(
        "durable",
        hazelcast_members=",".join(durable.member_addresses(MEMBERS)),
        hazelcast_cluster_name=durable.cluster_name,
    )


def stored(stack: Stack) -> dict[str, dict[str, Any]]:
    """The records PostgreSQL holds for this session's clients map, by id."""
    rows = stack.sql(
        f"SELECT record FROM ratelimit_registry WHERE map_name = '{MAPS['clients_map']}'"
    )
    records = (json.loads(line) for line in rows.splitlines() if line)
    return {record["id"]: {field: record[field] for field in FIELDS} for record in records}


def shown(replica: Replica, client_id: str) -> dict[str, Any] | None:
    response = replica.get(f"/bucket/{client_id}", headers=ADMIN)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return {field: record[field] for field in FIELDS}


def decides(replica: Replica, client_id: str) -> bool:
    response = replica.get("/example", headers={"X-Api-Id": client_id}, timeout=10)
    return response.status_code in (200, 429) and "x-ratelimit-degraded" not in response.headers


def test_every_client_survives_a_restart_of_every_member(replica: Replica, durable: Stack) -> None:
    """N clients (some changed, some deleted) are all back after every member stopped and
    started again: same ids, names, limits, windows and alignments, names still unique,
    deleted ones still gone, and the guarded route decides for them."""
    window = quiet_window()
    created = []
    started = time.monotonic()
    for i in range(CLIENTS):
        fields = {
            "limit": 1 + i,
            "window_seconds": window if i % 2 else 60 + i,
            "window_alignment": "clock" if i % 3 == 0 else "first_request",
        }
        created.append(create_client(replica, f"durable-{i}-{uuid.uuid4().hex[:6]}", **fields))
    create_seconds = time.monotonic() - started
    changed = {client["id"] for client in created[::10]}
    for client in created:
        if client["id"] in changed:
            response = replica.request(
                "PATCH", f"/bucket/{client['id']}", json={"limit": 5000}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
            client["limit"] = client["limits"][0]["limit"] = 5000
    deleted = {client["id"] for client in created[5::10]}
    for client_id in deleted:
        assert replica.request("DELETE", f"/bucket/{client_id}", headers=ADMIN).status_code == 204
    expected = {c["id"]: {f: c[f] for f in FIELDS} for c in created if c["id"] not in deleted}
    assert stored(durable) == expected
    assert decides(replica, created[1]["id"])

    durable.stop([durable.member_name(i) for i in range(MEMBERS)])
    restart_seconds = durable.start_members(MEMBERS)
    # 503 until the replica has reconnected and seen the registry loaded.
    back_seconds = replica.wait_for(
        lambda: replica.get(f"/bucket/{created[1]['id']}", headers=ADMIN).status_code == 200,
        120,
        "the registry to be loaded",
    )
    print(
        f"\n{CLIENTS} clients created in {create_seconds:.1f}s; members restarted in "
        f"{restart_seconds:.1f}s, registry answering {back_seconds:.1f}s later"
    )

    for client in created:
        assert shown(replica, client["id"]) == expected.get(client["id"]), client["id"]
        found = replica.get("/bucket", params={"name": client["name"]}, headers=ADMIN)
        if client["id"] in deleted:
            assert found.status_code == 404
        else:
            assert found.json()["id"] == client["id"]
    taken = replica.request("POST", "/bucket", json={"name": created[0]["name"]}, headers=ADMIN)
    assert taken.status_code == 409, taken.text
    reused = replica.request("POST", "/bucket", json={"name": created[5]["name"]}, headers=ADMIN)
    assert reused.status_code == 201, reused.text  # a deleted client's name is free again
    assert decides(replica, created[1]["id"])
    assert replica.get("/example", headers={"X-Api-Id": created[5]["id"]}).status_code == 404


def test_without_the_database_writes_are_503_and_change_nothing(
    replica: Replica, durable: Stack
) -> None:
    """With PostgreSQL stopped, POST, PATCH and DELETE answer a JSON 503 with Retry-After
    and leave no trace (no name without its record, no record without its name, nothing
    on disk); reads and the guarded route go on; once it is back, writes work again."""
    client = create_client(replica, limit=1000, window_seconds=quiet_window())
    before = stored(durable)
    name = f"away-{uuid.uuid4().hex[:8]}"

    durable.stop_database()
    try:
        created = replica.request("POST", "/bucket", json={"name": name}, headers=ADMIN)
        assert created.status_code == 503, created.text
        assert "registry database unavailable" in created.json()["error"]
        assert created.headers["retry-after"]
        found = replica.get("/bucket", params={"name": name}, headers=ADMIN)
        assert found.status_code == 404  # the name was not claimed
        path = f"/bucket/{client['id']}"
        patched = replica.request("PATCH", path, json={"limit": 1}, headers=ADMIN)
        assert patched.status_code == 503, patched.text
        assert replica.request("DELETE", path, headers=ADMIN).status_code == 503
        assert shown(replica, client["id"]) == {f: client[f] for f in FIELDS}
        holder = replica.get("/bucket", params={"name": client["name"]}, headers=ADMIN)
        assert holder.json()["id"] == client["id"]  # the name still has its record
        for _ in range(5):
            assert decides(replica, client["id"])
        assert replica.get("/example", headers={"X-Api-Id": str(uuid.uuid4())}).status_code == 404
    finally:
        durable.start_database()

    assert stored(durable) == before
    created = replica.request("POST", "/bucket", json={"name": name}, headers=ADMIN)
    assert created.status_code == 201, created.text
    patched = replica.request("PATCH", f"/bucket/{client['id']}", json={"limit": 7}, headers=ADMIN)
    assert patched.status_code == 200, patched.text
    assert replica.request("DELETE", f"/bucket/{client['id']}", headers=ADMIN).status_code == 204
    after = stored(durable)
    assert client["id"] not in after
    assert after[created.json()["id"]]["name"] == name
