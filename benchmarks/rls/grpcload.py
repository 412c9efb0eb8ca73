"""gRPC load with ghz: ``ShouldRateLimit`` calls at one service, closed loop, and the CPU
the generator itself took, so that a figure can be told from the generator's ceiling.

Why ghz: a Go load generator costs a fraction of what a Python one would on the same
2 cores, and the benchmark's HTTP side is wrk, also native. It is built once with
``go install`` into ``.run/ghz/`` (never committed). It needs no server reflection: the
service's descriptors come from the ``xds-protos`` stubs the service itself is built on,
written as a protoset (:func:`write_protoset`).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from benchmarks.rls.gobuild import go_install
from stack import ROOT

__all__ = [
    "GHZ_MODULE",
    "METHOD",
    "GhzMissing",
    "GhzRun",
    "ghz_binary",
    "ghz_cached",
    "rls_request",
    "run_ghz",
    "write_protoset",
]

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@latest"
CACHE = ROOT / ".run" / "ghz"
METHOD = "envoy.service.ratelimit.v3.RateLimitService.ShouldRateLimit"
#: ghz cancels the calls in flight when its duration ends; they come back as these
#: errors, at most one per concurrent caller, and are not a failure of the service.
CANCELLED_AT_STOP = ("transport is closing", "the client connection is closing")


class GhzMissing(RuntimeError):
    """ghz cannot be had here; the message says why, for the report."""


@dataclasses.dataclass
class GhzRun:
    """What one ghz run saw; ``generator_cores``: ghz's CPU seconds per second."""

    calls: int
    per_second: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    generator_cores: float
    seconds: float

    def problems(self, concurrency: int) -> list[str]:
        """Errors other than the calls cancelled at the end of the run."""
        at_stop = sum(n for e, n in self.errors.items() if _at_stop(e))
        others = {e: n for e, n in self.errors.items() if not _at_stop(e)}
        found = [f"{n} x {e}" for e, n in others.items()]
        if at_stop > concurrency:
            found.append(f"{at_stop} calls cut at stop, more than {concurrency} in flight")
        return found


def _at_stop(error: str) -> bool:
    return any(text in error for text in CANCELLED_AT_STOP)


def ghz_cached(cache: Path = CACHE) -> bool:
    """Whether ghz is built already (no ``go install`` needed)."""
    return (cache / "ghz").exists()


def ghz_binary(cache: Path = CACHE) -> Path:
    """ghz, built into ``cache`` with ``go install`` the first time."""
    return go_install(GHZ_MODULE, cache, "ghz", GhzMissing)


def write_protoset(path: Path) -> Path:
    """The rate limit service's file descriptor and every one it imports, as a
    ``FileDescriptorSet`` (ghz's ``--protoset``)."""
    from envoy.service.ratelimit.v3 import rls_pb2

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: FileDescriptor) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        files[file.name] = proto

    add(rls_pb2.DESCRIPTOR)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString()
    )
    return path


def rls_request(domain: str, descriptors: Sequence[Mapping[str, str]]) -> dict[str, object]:
    """A ``RateLimitRequest`` as ghz's JSON data: one descriptor per mapping."""
    return {
        "domain": domain,
        "descriptors": [
            {"entries": [{"key": k, "value": v} for k, v in d.items()]} for d in descriptors
        ],
    }


def _percentile_ms(report: dict[str, object], percent: int) -> float:
    for row in report.get("latencyDistribution") or []:  # type: ignore[attr-defined]
        if row["percentage"] == percent:
            return float(row["latency"]) / 1e6
    return 0.0


def run_ghz(
    binary: Path,
    protoset: Path,
    target: str,
    request: Mapping[str, object],
    *,
    concurrency: int,
    seconds: float,
    connections: int = 2,
) -> GhzRun:
    """One closed-loop run: ``concurrency`` callers over ``connections`` HTTP/2
    connections for ``seconds``; raises when ghz itself fails."""
    argv = [
        str(binary),
        "--insecure",
        *("--protoset", str(protoset), "--call", METHOD),
        *("--data", json.dumps(request)),
        *("--concurrency", str(concurrency), "--connections", str(connections)),
        *("--duration", f"{seconds}s", "--timeout", "10s", "--format", "json"),
        target,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 and not done.stdout.startswith("{"):
        raise RuntimeError(f"ghz failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return GhzRun(
        calls=int(report["count"]),
        per_second=float(report["rps"]),
        p50_ms=_percentile_ms(report, 50),
        p99_ms=_percentile_ms(report, 99),
        statuses=dict(report.get("statusCodeDistribution") or {}),
        errors=dict(report.get("errorDistribution") or {}),
        generator_cores=cpu / wall if wall else 0.0,
        seconds=wall,
    )
