"""What every scenario gets: the server under load, the load settings, measuring helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from scholarsource.bench.flows import Op
from scholarsource.bench.loadgen import LoadResult, LoadSpec, run_load
from scholarsource.bench.procstats import RoleSampler
from scholarsource.bench.progress import Progress
from scholarsource.bench.servers import Target

DEFAULT_DURATION = 5.0


@dataclass(frozen=True)
class Settings:
    """The load the command line asked for; None means the scenario's own default."""

    clients: int = 32
    duration: float | None = None
    jobs: int | None = None
    rate: float | None = None
    processes: int = 2
    client: str = "raw"
    scrape_metrics: float | None = None  # GET /metrics this often (s) during each scenario
    streams: int = 0  # sse: hold this many event streams open while submits run

    def with_value(self, key: str, value: float) -> Settings:
        """These settings with `clients` or `rate` set (for a sweep)."""
        if key == "clients":
            return replace(self, clients=int(value))
        return replace(self, rate=value)


class ServerStats:
    """The server's CPU and peak RSS by role over a stretch, or why they are unavailable."""

    def __init__(self, target: Target) -> None:
        roles, self.unavailable = target.roles()
        self.sampler = RoleSampler(roles) if roles is not None else None
        self.began = self.ended = time.monotonic()

    def result(self, operations: int, seconds: float | None = None) -> dict[str, Any]:
        """Per role, plus the total in cores over `seconds` (default: the whole sampled
        stretch) and CPU µs per operation (`operations`: every request sent while
        sampling, warm-up included, as the CPU includes it)."""
        if self.sampler is None:
            return {"unavailable": self.unavailable}
        seconds = seconds or self.ended - self.began
        roles = self.sampler.result(seconds)
        cpu = sum(role["cpu_s"] for role in roles.values())
        return {"roles": roles, "cpu_cores": round(cpu / max(seconds, 1e-9), 3),
                "cpu_us_per_operation": round(cpu / max(operations, 1) * 1e6, 1),
                "api_cpu_us_per_operation": round(roles["api"]["cpu_s"] / max(operations, 1)
                                                  * 1e6, 1)}


@dataclass
class Context:
    """One scenario's run: where, how hard, and the progress bar to keep moving."""

    target: Target
    settings: Settings
    progress: Progress

    @contextmanager
    def server_stats(self) -> Iterator[ServerStats]:
        """Sample the server's processes while the block runs."""
        stats = ServerStats(self.target)
        stats.began = time.monotonic()
        try:
            if stats.sampler is None:
                yield stats
            else:
                with stats.sampler:
                    yield stats
        finally:
            stats.ended = time.monotonic()

    def spec(self, op: Op, *, total: int | None = None, client: str | None = None,
             timed: bool = True) -> LoadSpec:
        """The load for `op`: timed (--duration) unless --jobs or `total` fixes a count."""
        s = self.settings
        count = total if total is not None else s.jobs
        duration = (s.duration or DEFAULT_DURATION) if timed and count is None else None
        return LoadSpec(self.target.url, op, clients=s.clients,
                        processes=max(1, min(s.processes, s.clients)),
                        duration=duration, total=None if duration else count,
                        rate=s.rate, warmup=min(0.5, (duration or 0) / 5),
                        client=client or s.client)

    def load(self, label: str, spec: LoadSpec) -> LoadResult:
        """Run `spec` with the progress bar showing `label`."""
        self.progress.start(label, total=spec.total,
                            seconds=None if spec.duration is None
                            else spec.duration + spec.warmup)
        try:
            return run_load(spec, self.progress.update)
        finally:
            self.progress.finish()
