"""The peer: envoyproxy/ratelimit (Go) on Redis, started beside our replicas with the
same configuration file, so that one Envoy template can be pointed at either.

Why built here rather than pulled as an image: the benchmark runs plain processes on
loopback (no container engine), and ``go install`` of upstream's ``service_cmd`` is
upstream's own build. The binary is cached under ``.run/rls-peer/bin`` (never committed)
and built once; Redis is Debian's ``redis-server``, installed with apt-get when missing
and the benchmark runs as root. Whatever cannot be had raises :class:`PeerMissing` with
the reason, which the report prints in place of the peer's figures.

Both processes are :class:`stack.Part` s of the benchmark stack (pid files, logs, stop
with the stack) and listen on 127.0.0.1 only: upstream binds 0.0.0.0 by default, so its
``HOST``, ``GRPC_HOST`` and ``DEBUG_HOST`` are set. Redis keeps nothing on disk: a run
starts with no counters, as our stack's fresh members do.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.rls.gobuild import go_install
from stack import LOOPBACK, ROOT, Part, Stack

__all__ = [
    "PEER_MODULE",
    "PeerMissing",
    "PeerPorts",
    "peer_binary",
    "peer_parts",
    "redis_server",
]

#: Upstream's service, as its README builds it.
PEER_MODULE = "github.com/envoyproxy/ratelimit/src/service_cmd@latest"
#: Where the built binary is kept between runs (``.run/`` is never committed).
CACHE = ROOT / ".run" / "rls-peer" / "bin"
#: ``go install`` fetches some 100 modules on a cold cache: bounded all the same.
APT_TIMEOUT_SECONDS = 300
#: Above the benchmark stack's HTTP parts (replicas +0, nginx +10, Prometheus +20, demo
#: app +30, PostgreSQL +40, Envoy and the replicas' gRPC ports after them).
PEER_PORT_OFFSET = 90


class PeerMissing(RuntimeError):
    """The peer (or Redis) cannot run here; the message says why, for the report."""


@dataclasses.dataclass(frozen=True)
class PeerPorts:
    """The peer's loopback ports: Redis, then upstream's HTTP (``/healthcheck``), gRPC
    and debug (``/stats``) listeners."""

    redis: int
    http: int
    grpc: int
    debug: int

    @classmethod
    def of(cls, stack: Stack) -> PeerPorts:
        first = stack.layout.api_port + PEER_PORT_OFFSET
        return cls(redis=first, http=first + 1, grpc=first + 2, debug=first + 3)


def peer_binary(cache: Path = CACHE) -> Path:
    """Upstream's binary, built into ``cache`` with ``go install`` the first time."""
    return go_install(PEER_MODULE, cache, "service_cmd", PeerMissing)


def redis_server() -> Path:
    """Debian's ``redis-server``, installed with apt-get when missing and we are root."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PeerMissing("redis-server is missing: run `sudo apt-get install redis-server`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
    ):
        try:
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired as error:
            raise PeerMissing(f"{' '.join(argv)} took over {APT_TIMEOUT_SECONDS} s") from error
        if done.returncode != 0:
            raise PeerMissing(f"{' '.join(argv)} failed: {done.stderr.strip()[-400:]}")
    found = shutil.which("redis-server")
    if not found:
        raise PeerMissing("apt-get installed redis-server, but it is not on PATH")
    return Path(found)


def peer_parts(stack: Stack, config_file: Path, binary: Path, redis: Path) -> list[Part]:
    """Redis and the peer, the peer reading ``config_file`` (copied into its runtime
    layout, ``<RUNTIME_ROOT>/<RUNTIME_SUBDIRECTORY>/config/``); start them in this order."""
    ports = PeerPorts.of(stack)
    folder = stack.run_dir / "rls-peer"
    runtime = folder / "runtime"
    config_dir = runtime / "ratelimit" / "config"
    if config_dir.exists():
        shutil.rmtree(config_dir)
    config_dir.mkdir(parents=True)
    shutil.copy(config_file, config_dir / config_file.name)
    redis_dir = folder / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis_part = Part(
        "rls-peer-redis",
        [
            str(redis),
            *("--bind", LOOPBACK, "--port", str(ports.redis)),
            *("--save", "", "--appendonly", "no", "--dir", str(redis_dir)),
            *("--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"),
        ],
        ports.redis,
    )
    env = {
        "USE_STATSD": "false",
        # Without statsd upstream falls back to a sink that logs every timer sample as a
        # JSON line whatever LOG_LEVEL says (60 MB of log in a 5-minute run, written on
        # its request path); our service keeps its metrics in memory, so the peer does
        # too, in its null sink.
        "DISABLE_STATS": "true",
        "REDIS_SOCKET_TYPE": "tcp",
        "REDIS_URL": f"{LOOPBACK}:{ports.redis}",
        "RUNTIME_ROOT": str(runtime),
        "RUNTIME_SUBDIRECTORY": "ratelimit",
        "RUNTIME_WATCH_ROOT": "false",
        "HOST": LOOPBACK,
        "PORT": str(ports.http),
        "GRPC_HOST": LOOPBACK,
        "GRPC_PORT": str(ports.grpc),
        "DEBUG_HOST": LOOPBACK,
        "DEBUG_PORT": str(ports.debug),
        "LOG_LEVEL": "warn",
    }
    peer_part = Part(
        "rls-peer",
        [str(binary)],
        ports.http,
        env,
        ready_path="/healthcheck",
        # Upstream reads several unprefixed names (PORT, HOST, ...): none from our shell.
        unset_env=("REDIS_", "RUNTIME_", "GRPC_", "DEBUG_", "STATSD_", "USE_", "BACKEND_"),
    )
    return [redis_part, peer_part]
