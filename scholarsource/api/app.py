"""`create_app(config)`: the Starlette app every API worker serves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from scholarsource import logs
from scholarsource.api import (
    access,
    accesslog,
    artifacts,
    auth,
    authmode,
    batch,
    compat,
    csrf,
    events,
    hosts,
    jobs,
    openapi,
    ops,
    prometheus,
    queues,
    schedules,
    stats,
    workflows,
)
from scholarsource.api.catalog import Catalog
from scholarsource.api.fanout import EventReader
from scholarsource.api.state import Services
from scholarsource.api.submits import SubmitBatcher
from scholarsource.config import Config
from scholarsource.dashboard import login
from scholarsource.dashboard import routes as dashboard
from scholarsource.errors import (
    ApiError,
    MethodNotAllowed,
    NotFound,
    StoreUnavailable,
    store_unavailable,
)
from scholarsource.metrics.counters import REJECTED
from scholarsource.quotas import QuotaPolicy
from scholarsource.sizing import plan
from scholarsource.store.factory import open_store

log = logging.getLogger("scholarsource.api")

async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    REJECTED.labels(exc.code).inc()
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return await _api_error(request, NotFound(f"no route {request.url.path}"))
    if exc.status_code == 405:  # keep Starlette's Allow header (RFC 9110 requires it)
        return await _api_error(request, MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}",
            headers=dict(exc.headers or {})))
    return JSONResponse({"error": "http_error", "message": str(exc.detail)},
                        status_code=exc.status_code)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc)
    return await _api_error(request, store_unavailable())


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    REJECTED.labels("internal_error").inc()
    return JSONResponse({"error": "internal_error", "message": "internal server error"},
                        status_code=500)


def create_app(config: Config) -> Starlette:
    """The app, with its store opened in the lifespan of the worker that serves it."""

    logs.quiet_shutdown_cancels()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(config, "api")
        app.state.services = Services(config=config, store=store, catalog=Catalog(store),
                                      submits=SubmitBatcher(
                                          store, jobs.committed(store, config.job_log),
                                          QuotaPolicy(config.tenants, config.max_queued)),
                                      reader=EventReader(store, interval=config.events_interval,
                                                         capacity=config.events_buffer),
                                      api_workers=plan(config).workers)
        try:
            yield
        finally:
            await app.state.services.reader.close()
            await store.close()

    routes = [*batch.routes, *jobs.routes, *events.routes, *compat.routes, *ops.routes,
              *stats.routes, *queues.routes, *schedules.routes, *workflows.routes,
              *openapi.routes, *prometheus.routes, *dashboard.routes, *login.routes]
    routes += artifacts.routes
    return Starlette(
        routes=access.protect(routes, enforce=authmode.mode(config) == "keys"),
        lifespan=lifespan,
        # Authentication last: a request refused for its Host or as cross-site costs no
        # key lookup.
        middleware=[*accesslog.middleware(config), *prometheus.middleware,
                    *hosts.middleware(config), *csrf.middleware(), *auth.middleware(config)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
            Exception: _internal,
        },
    )
