"""Fuzzing: schemathesis against the served OpenAPI document, through nginx, with a real
admin token and a real client id so that it reaches past 401 and 404."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.cluster import DEFAULT_STRATEGY
from tests.conftest import Topology

#: Cases per operation and phase: seconds, not minutes, in make test.
MAX_EXAMPLES = 25
SEED = 7301
RUN_TIMEOUT_SECONDS = 300


#: The bodies of POST /bucket and PATCH /bucket/{id} follow two rules of ``limits`` that
#: JSON Schema cannot state (unique names, at least one limit not shadow), and a PATCH in
#: the single form is refused on a client of several limits, which depends on the client,
#: not on the body: for those two operations a 422 is an acceptable answer to a
#: schema-valid body too. Every other check holds for them as for the rest.
CONFIG = """
[[operations]]
include-path = "/bucket"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx",
]

[[operations]]
include-path = "/bucket/{client_id}"
include-method = "PATCH"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx",
]
"""


def schemathesis_binary() -> Path:
    return Path(sys.executable).with_name("schemathesis")


def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_schema(
    topology: Topology, tmp_path: Path
) -> None:
    """Every check of schemathesis holds for every operation: no 5xx, every status and
    body as documented, schema-valid input accepted and invalid input refused."""
    topology.use(DEFAULT_STRATEGY)
    with httpx.Client(base_url=topology.url, timeout=30) as http:
        created = http.post(
            "/bucket",
            json={"name": f"fuzz-{uuid.uuid4().hex}", "limit": 1_000_000, "window_seconds": 60},
            headers=topology.admin,
        )
        assert created.status_code == 201, created.text
        client_id = created.json()["id"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        str(schemathesis_binary()),
        "--config-file",
        str(config),
        "run",
        f"{topology.url}/docs/openapi.json",
        "--url",
        topology.url,
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "15",
        # Names may hold any Unicode letter, but not format, private-use or unassigned
        # characters, which the document's pattern cannot name: keep generated strings
        # to ASCII (the API tests cover Unicode names by hand).
        "--generation-codec",
        "ascii",
        "--header",
        f"Authorization: {topology.admin['Authorization']}",
        "--header",
        f"X-Api-Id: {client_id}",
        # The rate limit service's bridge routes take and answer protobuf, which
        # schemathesis cannot generate; tests/integration/test_rls_grpc.py sends them
        # undecodable and invalid bodies instead.
        "--exclude-tag",
        "envoy",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # its cache folder stays out of the checkout
        check=False,
    )
    (tmp_path / "schemathesis.txt").write_text(result.stdout)
    summary = result.stdout[-6000:]
    print(f"\n{summary}")
    assert result.returncode == 0, f"{summary}\n{result.stderr[-3000:]}"
