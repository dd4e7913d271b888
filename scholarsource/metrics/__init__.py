"""Prometheus metrics, summed across every process.

prometheus-client's multiprocess mode: each process writes its own values to mmap'd files in
one directory, and whichever API worker answers `GET /metrics` adds them up. The mode is
chosen when prometheus_client is first imported, so `serve` calls `use_directory()` (this
module imports no prometheus_client) before anything imports `metrics.counters`. Figures that
are read rather than counted (queue depth, slots, file sizes, CPU and RSS by role) are
collected at scrape time instead, by scholarsource/api/prometheus.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_directory(data_dir: str) -> None:
    """Start with an empty metrics directory under the data directory (counters restart
    with the server, as Prometheus expects) and put every process in multiprocess mode."""
    path = Path(data_dir) / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[ENV] = str(path)
