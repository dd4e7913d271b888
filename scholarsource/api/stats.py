"""`GET /api/stats`: the queue at a glance, and `GET /api/stats/events`, the same every second
as Server-Sent Events (the dashboard's live overview).

Job figures are scoped to the caller's tenant. Only live states and the dead letters are
counted per queue (finished jobs only ever grow, so counting them would cost more with every
day of history); throughput, its 15-minute history and timings come from the jobs that
finished in the last 15 minutes, through the finished_at index. Every viewer of a worker
shares one snapshot per tick (see api/snapshots.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from scholarsource.api import ops
from scholarsource.api.snapshots import SharedSnapshots, until_next_tick
from scholarsource.api.state import Services, services
from scholarsource.api.tenancy import is_admin, tenant_of
from scholarsource.errors import StoreUnavailable
from scholarsource.percentiles import percentile
from scholarsource.store.base import QUEUE_COUNT_STATES, JobState, PoolInfo

WINDOWS = {"1m": 60.0, "5m": 300.0, "15m": 900.0}
# The throughput history: jobs finished per 10-second bucket over the last 15 minutes (the
# chart on a freshly opened overview); the windows above are sums of its latest buckets.
HISTORY_STEP = 10.0
HISTORY_BUCKETS = int(WINDOWS["15m"] / HISTORY_STEP)
# Timings are computed over at most this many of the latest finished jobs (enough for a p99;
# fetching 10,000 rows took 22 ms).
TIMING_SAMPLE = 2_000
STREAM_INTERVAL = 1.0


async def snapshot(svc: Services, tenant: str, operator: bool = True) -> dict[str, Any]:
    """Everything /api/stats shows, for `tenant`. Only an `operator` (an admin key) sees
    the machine: the pool's pid and owner, each slot's process id."""
    store, now = svc.store, time.time()
    queues = await store.queue_counts(tenant)
    totals = {state.value: 0 for state in JobState}
    for by_status in queues.values():
        for status, n in by_status.items():
            totals[status] += n
    since = now - HISTORY_STEP * HISTORY_BUCKETS
    history = await store.finished_history(tenant, since, HISTORY_STEP, HISTORY_BUCKETS)
    totals.update(await _final_totals(svc, tenant))
    recent = await store.recently_finished(tenant, now - WINDOWS["15m"], TIMING_SAMPLE)
    pool, known = await ops.pools(svc)
    running, _ = await store.list_jobs(tenant, status=JobState.RUNNING.value,
                                       limit=max(1, sum(p.slot_count for p in known)))
    return {
        "time": now,
        "totals": totals,
        "queues": {queue: {s: by_status.get(s, 0) for s in QUEUE_COUNT_STATES}
                   for queue, by_status in sorted(queues.items())},
        "slots": {"busy": pool.busy if pool else 0, "total": pool.slot_count if pool else 0},
        "pool": {"pid": pool.pid if pool and operator else None,
                 "heartbeat_age": None if pool is None else round(now - pool.heartbeat_at, 3),
                 "admission": _admission(pool),
                 "slots": _slot_rows(pool, now, {job.id for job in running}, operator)},
        "pools": [row if operator else {**row, "owner": None, "pid": None}
                  for row in ops.pool_rows(known, now)],
        "throughput": {name: round(sum(history[-int(span / HISTORY_STEP):]) / span, 3)
                       for name, span in WINDOWS.items()},
        "history": {"start": round(since, 3), "step": HISTORY_STEP, "finished": history},
        "tasks": _timings(recent),
        "database": (await store.storage()).to_json(),
    }


def _admission(pool: PoolInfo | None) -> dict[str, Any]:
    """Why the pool holds jobs back for memory, without the task it holds back: that job may
    be another tenant's (an admin key's /api/health names it)."""
    return {} if pool is None else {k: v for k, v in pool.admission.items() if k != "task"}


def _slot_rows(pool: PoolInfo | None, now: float, mine: set[str],
               operator: bool) -> list[dict[str, Any]]:
    """What each slot runs, from the pool's last heartbeat, with how long its job has run.
    A job of another tenant (not in `mine`) shows as just that: no id, task or times; a
    process id only to an operator."""
    if pool is None:
        return []
    rows = []
    for row in pool.slot_rows:
        if not operator:
            row = {**row, "pid": None}
        if row.get("job_id") is not None and row["job_id"] not in mine:
            row = {**row, "job_id": None, "task": None, "started_at": None,
                   "other_tenant": True}
        rows.append({**row, "running_for": None if row.get("started_at") is None
                     else round(max(0.0, now - row["started_at"]), 3)})
    return rows


async def _final_totals(svc: Services, tenant: str) -> dict[str, int]:
    # Kept out of the per-queue walk: for a tenant this is an index-only count
    # (jobs_tenant_status).
    counts = await svc.store.counts(tenant)
    return {status: counts[status] for status in ("succeeded", "cancelled")}


def _timings(recent: list[Any]) -> dict[str, Any]:
    runs: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    for job in recent:
        if job.started_at is None:
            continue  # cancelled before it ran
        runs[job.task].append(job.finished_at - job.started_at)
        waits[job.task].append(job.started_at - job.created_at)
    return {task: {"finished_15m": len(runs[task]),
                   "run_time": percentile(runs[task], (50, 95, 99), scale=1.0),
                   "wait_time": percentile(waits[task], (50, 95, 99), scale=1.0)}
            for task in sorted(runs)}


# Whose figures and whether the viewer is an operator: the key of a shared snapshot.
View = tuple[str, bool]


def shared(request: Request) -> SharedSnapshots[View]:
    """This worker's shared snapshots (made on first use)."""
    state = request.app.state
    snapshots: SharedSnapshots[View] | None = getattr(state, "stats_snapshots", None)
    if snapshots is None:
        svc = services(request)
        snapshots = state.stats_snapshots = SharedSnapshots(
            lambda view: snapshot(svc, *view), STREAM_INTERVAL)
    return snapshots


def view_of(request: Request) -> View:
    return tenant_of(request), is_admin(request)


async def stats(request: Request) -> JSONResponse:
    # Computed afresh: a client that just changed something sees it (streams share theirs).
    return JSONResponse(await snapshot(services(request), *view_of(request)))


async def stream(request: Request) -> StreamingResponse:
    snapshots, tenant = shared(request), view_of(request)
    first = await snapshots.get(tenant)  # a store that cannot answer: 503 before the stream

    async def events() -> AsyncIterator[str]:
        yield first.event
        sent = first.tick
        while True:
            # Every stream of the worker wakes on the same tick, so they share one snapshot.
            await asyncio.sleep(until_next_tick(STREAM_INTERVAL))
            try:
                latest = await snapshots.get(tenant)
            except StoreUnavailable:
                yield ": store unavailable, retrying\n\n"
                continue
            # A stream that joined a computation still running from an earlier tick may be
            # handed a snapshot it already sent: a viewer never gets the same one twice.
            if latest.tick > sent:
                sent = latest.tick
                yield latest.event

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


routes = [
    Route("/api/stats", stats, methods=["GET"]),
    Route("/api/stats/events", stream, methods=["GET"]),
]
