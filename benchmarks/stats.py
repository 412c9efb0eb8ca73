"""The one percentile every benchmark reports, so that a p99 means the same in each, and
the load reading kept beside every figure (on a shared machine a figure means little
without it)."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["load_now", "percentile"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, 0 for no values (``statistics.quantiles`` needs two
    values at least, and interpolates between them)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.5) - 1))]


def load_now() -> float:
    """The machine's 1-minute load average now. A row keeps the highest of its runs: the
    busiest moment is what can have bent its figure."""
    return os.getloadavg()[0]
