"""`GET /metrics` in the Prometheus text format, and the middleware that counts requests.

Counters and histograms that events increment come from every process's files
(prometheus-client's MultiProcessCollector, see scholarsource/metrics). Figures that are read,
not counted, are gathered here at scrape time: jobs per queue and state, the age of each
queue's oldest queued job (what an autoscaler reads), slots, database and WAL size, CPU and RSS
per process role.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from scholarsource.api.observer import ResponseObserver
from scholarsource.api.ops import pools, process_tree
from scholarsource.api.state import services
from scholarsource.metrics import ENV
from scholarsource.metrics.counters import HTTP_LATENCY, HTTP_REQUESTS
from scholarsource.store.base import QUEUE_COUNT_STATES


class RequestMetrics(ResponseObserver):
    """Counts each request by its route's template, never its path, so job ids cannot blow
    up the number of series."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        # labels() takes a lock and builds a key each call; the set of routes, methods and
        # statuses is small, so their children are looked up once.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        key = (route, scope["method"], status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                HTTP_REQUESTS.labels(route, scope["method"], str(status)),
                HTTP_LATENCY.labels(route))
        children[0].inc()
        children[1].observe(seconds)


middleware = [Middleware(RequestMetrics)]


class _Snapshot:
    """Read-at-scrape figures as a collector for one exposition."""

    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        jobs = GaugeMetricFamily("scholarsource_queue_jobs",
                                 "Jobs per queue in each live state and dead.",
                                 labels=["queue", "status"])
        for queue, by_status in sorted(f["queues"].items()):
            for status in QUEUE_COUNT_STATES:
                jobs.add_metric([queue, status], by_status.get(status, 0))
        yield jobs
        age = GaugeMetricFamily("scholarsource_queue_oldest_age_seconds",
                                "Seconds since the oldest queued job of each queue was "
                                "submitted (0: none is queued).", labels=["queue"])
        for queue in sorted(f["queues"]):
            oldest = f["oldest"].get(queue)
            age.add_metric([queue], 0.0 if oldest is None else max(0.0, f["now"] - oldest))
        yield age
        slots = GaugeMetricFamily("scholarsource_slots", "Job slots, busy and in all.",
                                  labels=["state"])
        slots.add_metric(["busy"], f["busy"])
        slots.add_metric(["total"], f["slots"])
        yield slots
        files = GaugeMetricFamily("scholarsource_database_bytes",
                                  "Size of the database file and of its WAL.", labels=["file"])
        files.add_metric(["database"], f["storage"].database_bytes)
        files.add_metric(["wal"], f["storage"].log_bytes)
        yield files
        cpu = GaugeMetricFamily("scholarsource_process_cpu_seconds",
                                "CPU seconds used so far by the live processes of each role.",
                                labels=["role"])
        rss = GaugeMetricFamily("scholarsource_process_resident_memory_bytes",
                                "Resident memory of the processes of each role.",
                                labels=["role"])
        for role, (seconds, resident) in sorted(f["roles"].items()):
            cpu.add_metric([role], seconds)
            rss.add_metric([role], resident)
        yield cpu
        yield rss


def _by_role(tree: dict[str, Any]) -> dict[str, tuple[float, int]]:
    roles: dict[str, tuple[float, int]] = {}
    for role, pids in (("master", [tree["master"]]), ("api", tree["api"]),
                       ("pool", [tree["pool"]] if tree["pool"] else []),
                       ("slots", tree["slots"])):
        seconds, resident = 0.0, 0
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    times = proc.cpu_times()
                    seconds += times.user + times.system
                    resident += proc.memory_info().rss
            except psutil.Error:
                continue  # ended since the tree was read
        roles[role] = (round(seconds, 3), resident)
    return roles


async def metrics(request: Request) -> Response:
    svc = services(request)
    pool, _ = await pools(svc)
    now = time.time()
    figures = {
        # Only live states and dead letters: counting the whole history on every scrape
        # would cost more each day (the ended-jobs counters give its rates).
        "queues": await svc.store.queue_counts(None),
        "oldest": {q.name: q.oldest_queued_at for q in await svc.store.queue_stats(now)},
        "now": now,
        "busy": pool.busy if pool else 0,
        "slots": pool.slot_count if pool else 0,
        "storage": await svc.store.storage(),
        "roles": _by_role(process_tree(pool)),
    }
    registry = CollectorRegistry()
    if os.environ.get(ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_Snapshot(figures))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
