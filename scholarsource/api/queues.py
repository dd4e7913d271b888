"""Queues: `GET /api/queues` (depth, limits, pauses, throughput, rate limits) and
`POST /api/queues/{name}/pause|resume`. A pause lives in the store, so it survives restarts
and the pool's claim honours it at once (pool/policy.py).

The counts are the caller's tenant's; only an admin without `?tenant=` sees the whole
server's. Queue names, limits and pauses are the operator's config and show to everyone,
but a queue that exists only through another tenant's jobs does not."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource.api.state import Services, services
from scholarsource.api.tenancy import scope_of
from scholarsource.errors import ValidationFailed
from scholarsource.limits import NAME_PATTERN, QueueLimits, Rate
from scholarsource.store.base import QueueStats, RateStats, Wake

# Throughput is counted over this many seconds back from now.
THROUGHPUT_WINDOW = 60.0


async def known_queues(svc: Services) -> set[str]:
    """Every queue worth showing or pausing: configured, a task's, one with live jobs or
    recent finishes, or paused."""
    names = set(svc.config.queues) | await svc.store.paused_queues()
    names |= {task.queue for task in (await svc.catalog.tasks()).values()}
    return names


def _queue(stats: QueueStats, limits: QueueLimits, paused: bool, rates: list[RateStats],
           now: float) -> dict[str, Any]:
    oldest = stats.oldest_queued_at
    return {"name": stats.name, "queued": stats.queued, "scheduled": stats.scheduled,
            "running": stats.running, "max_running": limits.max_running,
            "reserved": limits.reserved, "paused": paused,
            "throttled": sum(r.queued for r in rates if r.queue == stats.name and r.throttled),
            "throughput": round(stats.finished / THROUGHPUT_WINDOW, 3),  # jobs per second
            "oldest_queued_age": None if oldest is None else round(now - oldest, 3)}


def _rate(rate: RateStats) -> dict[str, Any]:
    return {"task": rate.task, "queue": rate.queue,
            "rate_limit": str(Rate(rate.limit, rate.window)),
            "started_in_window": rate.started, "queued": rate.queued,
            "throttled": rate.throttled}


async def list_queues(request: Request) -> JSONResponse:
    svc = services(request)
    now, tenant = time.time(), scope_of(request)
    stats = {s.name: s for s in await svc.store.queue_stats(now - THROUGHPUT_WINDOW, tenant)}
    paused = await svc.store.paused_queues()
    rates = await svc.store.rates(tenant)
    names = sorted(await known_queues(svc) | set(stats))
    return JSONResponse({
        "queues": [_queue(stats.get(name, QueueStats(name)),
                          svc.config.queues.get(name, QueueLimits()), name in paused, rates,
                          now) for name in names],
        "rates": [_rate(rate) for rate in rates],
        "throughput_window": THROUGHPUT_WINDOW})


async def _set_paused(request: Request, paused: bool) -> JSONResponse:
    svc = services(request)
    name = request.path_params["name"]
    known = await known_queues(svc)
    if not NAME_PATTERN.fullmatch(name) or name not in known | {
            s.name for s in await svc.store.queue_stats(time.time())}:
        raise ValidationFailed(f"no queue named {name!r} (there are: "
                               f"{', '.join(sorted(known))})", code="unknown_queue",
                               field="name")
    await svc.store.pause_queue(name, paused)
    if not paused:
        svc.store.wake(Wake.SUBMITTED)  # its jobs may start now
    return JSONResponse({"name": name, "paused": paused})


async def pause(request: Request) -> JSONResponse:
    return await _set_paused(request, True)


async def resume(request: Request) -> JSONResponse:
    return await _set_paused(request, False)


routes = [Route("/api/queues", list_queues, methods=["GET"]),
          Route("/api/queues/{name}/pause", pause, methods=["POST"]),
          Route("/api/queues/{name}/resume", resume, methods=["POST"])]
