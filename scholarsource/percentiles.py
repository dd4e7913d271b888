"""Nearest-rank percentiles: the bench's latencies and the server's job timings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

_NAMES = {50: "p50", 90: "p90", 99: "p99", 99.9: "p99_9", 100: "max"}


def percentile(values: Iterable[float], qs: Sequence[float] = (50, 90, 99, 99.9, 100),
               scale: float = 1000.0) -> dict[str, float | None]:
    """Nearest-rank percentiles of `values` (seconds) in ms, named p50, p90, p99, p99_9 and
    max; None where there were no values."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        name = _NAMES.get(q, f"p{q:g}".replace(".", "_"))
        if not ordered:
            out[name] = None
            continue
        rank = math.ceil(round(q / 100 * len(ordered), 9))  # 99.9% of 1000 is 999, not 999.0…1
        index = min(len(ordered) - 1, max(0, rank - 1))
        out[name] = round(ordered[index] * scale, 3)
    return out
