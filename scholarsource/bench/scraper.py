"""`--scrape-metrics`: GET /metrics on a fixed period while a scenario runs, as Prometheus
would, so a run can show what being monitored costs (compare it with a run without)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import httpx

from scholarsource.percentiles import percentile


class MetricsScraper:
    """A thread that scrapes `url`/metrics every `every` seconds until the block ends."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="scraper")

    def __enter__(self) -> MetricsScraper:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    client.get("/metrics").raise_for_status()
                    self.latencies.append(time.perf_counter() - began)
                except httpx.HTTPError:
                    self.failures += 1
                self._stop.wait(max(self.every - (time.perf_counter() - began), 0))

    def summary(self) -> dict[str, Any]:
        """How many scrapes ran, how long they took, how many failed."""
        return {"every_s": self.every, "scrapes": len(self.latencies),
                "failures": self.failures,
                "latency_ms": percentile(self.latencies, (50, 99, 100))}
