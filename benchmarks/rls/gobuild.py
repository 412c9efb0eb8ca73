"""Go tools the rate limit benchmark builds from the Go module proxy (ghz, the peer),
each into a cache folder under ``.run/`` the first time, never committed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["BUILD_TIMEOUT_SECONDS", "go_install"]

#: Longest a ``go install`` may take (module downloads included).
BUILD_TIMEOUT_SECONDS = 600


def go_install(module: str, cache: Path, name: str, missing: type[Exception]) -> Path:
    """The binary ``name`` of ``module`` (``path@version``), built into ``cache`` with
    ``go install`` unless it is there already; ``missing`` is raised, with the reason,
    when Go is not installed or the build fails."""
    binary = cache / name
    if binary.exists():
        return binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise missing(f"go is not installed: {name} is built with `go install`")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [go, "install", module],
            env={**os.environ, "GOBIN": str(cache), "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise missing(f"go install {module} took over {BUILD_TIMEOUT_SECONDS} s") from error
    if done.returncode != 0 or not binary.exists():
        raise missing(f"go install {module} failed: {done.stderr.strip()[-600:]}")
    return binary
