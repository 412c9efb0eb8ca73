"""The one percentile every benchmark reports, so that a p99 means the same in each."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["percentile"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, 0 for no values (``statistics.quantiles`` needs two
    values at least, and interpolates between them)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.5) - 1))]
