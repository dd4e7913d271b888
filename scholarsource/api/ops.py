"""Operator routes: `/api/health`, the process tree by role, and the pools the store knows.

`/api/health` needs no key; with auth = "keys" only an admin key sees more than its status."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource import __version__
from scholarsource.api.state import Services, services
from scholarsource.api.tenancy import is_admin
from scholarsource.errors import StoreUnavailable
from scholarsource.pool.dispatcher import HEARTBEAT_INTERVAL
from scholarsource.store.base import PoolInfo
from scholarsource.store.owner import box_of

# Three missed heartbeats (and a little slack) make the pool count as stalled.
HEARTBEAT_STALE = 3 * HEARTBEAT_INTERVAL + 2.0


def process_tree(pool: PoolInfo | None) -> dict[str, Any]:
    """master, API workers, pool and slots: the master is our parent; its other children
    are the API workers."""
    master = os.getppid()
    pool_pid = pool.pid if pool else None
    try:
        api = sorted(p.pid for p in psutil.Process(master).children() if p.pid != pool_pid)
    except psutil.Error:
        api = [os.getpid()]
    return {"master": master, "api": api, "pool": pool_pid, "slots": pool.slots if pool else []}


async def pools(svc: Services) -> tuple[PoolInfo | None, list[PoolInfo]]:
    """This box's pool (the newest of its heartbeats) and every pool the store knows, the
    newest first: several boxes may share one store."""
    known = await svc.store.pools()
    box = box_of(svc.config.data_dir)
    return next((pool for pool in known if pool.owner.startswith(box)), None), known


def pool_rows(known: list[PoolInfo], now: float) -> list[dict[str, Any]]:
    """Every pool, as /api/health and /api/stats list them; `live` while it heartbeats."""
    return [{"owner": pool.owner, "pid": pool.pid, "slots": pool.slot_count, "busy": pool.busy,
             "heartbeat_age": round(now - pool.heartbeat_at, 3),
             "live": now - pool.heartbeat_at <= HEARTBEAT_STALE} for pool in known]


async def health(request: Request) -> JSONResponse:
    svc = services(request)
    store = svc.store
    problems: list[str] = []
    pool: PoolInfo | None = None
    known: list[PoolInfo] = []
    try:
        await store.check_writable()
        pool, known = await pools(svc)
    except StoreUnavailable as exc:
        problems.append(f"database not writable: {exc}")
    age = None if pool is None else round(time.time() - pool.heartbeat_at, 3)
    if pool is not None and age is not None and age > HEARTBEAT_STALE:
        problems.append(f"pool heartbeat is {age:.1f}s old")
    elif pool is None and not problems:
        problems.append("the pool has not reported yet")
    status = 200 if not problems else 503
    body: dict[str, Any] = {"status": "ok" if not problems else "unavailable",
                            "version": __version__}
    if not is_admin(request):
        # Open to probes without a key (auth = "keys"): the status code and these two are all
        # a liveness or readiness check reads. Pids, pool owners (host names) and the task a
        # slot waits to admit are the operator's, for an admin key.
        return JSONResponse(body, status_code=status)
    body |= {
        "problems": problems,
        "workers": services(request).api_workers,  # as sized: how many to expect in processes
        "pool": None if pool is None else {"pid": pool.pid, "slots": pool.slot_count,
                                          "busy": pool.busy, "heartbeat_age": age,
                                          "admission": pool.admission},
        "pools": pool_rows(known, time.time()),
        "processes": process_tree(pool),
    }
    return JSONResponse(body, status_code=status)


routes = [Route("/api/health", health, methods=["GET"])]
