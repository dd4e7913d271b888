"""Percentiles and per-second timelines of measured latencies."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scholarsource.percentiles import percentile


def timeline(starts: Sequence[float], latencies: Sequence[float],
             elapsed: float) -> list[dict[str, float | int | None]]:
    """Per second of the run: requests begun, their p50 and p99 latency (ms)."""
    seconds = max(1, math.ceil(elapsed))
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for start, latency in zip(starts, latencies, strict=True):
        buckets[min(seconds - 1, max(0, int(start)))].append(latency)
    rows: list[dict[str, float | int | None]] = []
    for second, bucket in enumerate(buckets):
        marks = percentile(bucket, (50, 99))
        rows.append({"t": second, "requests": len(bucket), "p50_ms": marks["p50"],
                     "p99_ms": marks["p99"]})
    return rows
