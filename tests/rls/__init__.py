"""Configuration files for the rate limit service's tests: ``refused/`` holds one file per
configuration upstream's loader refuses, ``upstream/`` upstream's own test configuration
and README examples, read by both the loading and the matching tests."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REFUSED", "upstream"]

HERE = Path(__file__).resolve().parent
REFUSED = HERE / "refused"


def upstream(name: str) -> str:
    """The text of one of upstream's configurations, ``upstream/{name}.yaml``."""
    return (HERE / "upstream" / f"{name}.yaml").read_text()
