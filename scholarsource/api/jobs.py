"""REST routes for jobs: submit, get, list, cancel (one or many), retry, and the dead letters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource import logs
from scholarsource.api import prefer
from scholarsource.api.headers import header
from scholarsource.api.schemas import (
    parse_bulk_cancel,
    parse_idempotency_key,
    parse_list_query,
    parse_submit,
    read_json,
)
from scholarsource.api.state import services
from scholarsource.api.submits import ask_of
from scholarsource.api.tenancy import jobs_scope, principal_of, tenant_of
from scholarsource.errors import Conflict, NotFound
from scholarsource.store.base import (
    RETRYABLE_STATES,
    Job,
    JobState,
    NewJob,
    Reused,
    Store,
    TaskDefaults,
    Wake,
)

log = logging.getLogger("scholarsource.jobs")


class SubmitParser:
    """Validates the submit bodies of one request for its tenant: the tenant and each task's
    defaults are looked up once per request (a batch brings up to max_batch bodies)."""

    def __init__(self, request: Request) -> None:
        self._svc = services(request)
        self._tenant = tenant_of(request)
        self._tasks: dict[str, TaskDefaults | None] = {}

    async def parse(self, body: Any, key: str | None) -> NewJob:
        """A submit body (its envelope) as the job it asks for, validated; 422 with the
        field otherwise."""
        name = body.get("task") if isinstance(body, dict) else None
        defaults = None
        if isinstance(name, str):
            if name not in self._tasks:
                self._tasks[name] = await self._svc.catalog.lookup(name)
            defaults = self._tasks[name]
        # Only a miss pays for the names, to suggest the one the client may have meant.
        known = await self._svc.catalog.names() if defaults is None else ()
        return parse_submit(body, defaults, self._svc.config, self._tenant, key, known)


async def parse_new_job(request: Request, body: Any, key: str | None) -> NewJob:
    """A submit body (its envelope) as the job it asks for, validated, for the request's
    tenant; 422 with the field otherwise."""
    return await SubmitParser(request).parse(body, key)


async def submit_job(request: Request, unwrap: Callable[[Any], Any] | None = None
                     ) -> tuple[Job, Reused | None, dict[str, str]]:
    """Validate, insert and commit a job (see `committed` for what follows); `unwrap` turns
    another form of body into the submit envelope. An existing job may answer instead
    (Reused says why: an Idempotency-Key the tenant already used, a cached result, a unique
    job's live twin); the same key for a different task or params is a 409, a submit over
    a quota a 429. Returns the job, why it was reused, and the RateLimit headers."""
    svc = services(request)
    key = parse_idempotency_key(header(request.scope, b"idempotency-key"))
    body = await read_json(request, svc.config)
    if unwrap is not None:
        body = unwrap(body)
    new = await parse_new_job(request, body, key)
    admitted = await svc.submits.admit(ask_of(principal_of(request)), [new])
    job, reused = admitted.jobs[0]
    return job, reused, admitted.headers


_REUSED_HEADERS = {Reused.IDEMPOTENT: {"Idempotent-Replayed": "true"},
                   Reused.CACHED: {"Cache-Hit": "true"}, Reused.UNIQUE: {}}


def submitted(job: Job, reused: Reused | None, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> JSONResponse:
    """202 for a new job; 200 for an existing one, with `Idempotent-Replayed: true` for one
    a key named before and `Cache-Hit: true` for a cached result; `headers` added."""
    headers = {"Location": f"/api/jobs/{job.id}", **(headers or {})}
    if reused is not None:
        headers.update(_REUSED_HEADERS[reused])
    return JSONResponse(body, status_code=202 if reused is None else 200, headers=headers)


def committed(store: Store, job_log: bool) -> Callable[[list[Job]], None]:
    """What follows each committed batch of submits: one wake-up for the pool, and one
    `job queued` line per job, written together."""

    def done(jobs: list[Job]) -> None:
        waiting = any(job.status is JobState.SCHEDULED for job in jobs)
        store.wake(Wake.SCHEDULED if waiting else Wake.SUBMITTED)
        if job_log:
            logs.write_lines(log, [(job.created_at, logging.INFO, "job queued", {
                "job_id": job.id, "task": job.task, "queue": job.queue, "attempt": 0})
                for job in jobs])

    return done


async def find_job(request: Request, job_id: str) -> Job:
    """The tenant's job (for an admin without `?tenant=`, any tenant's), or 404."""
    job = await services(request).store.get(jobs_scope(request), job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


async def acting_tenant(request: Request, job_id: str) -> str:
    """The tenant an action on one job runs in: the caller's, or for an admin acting across
    tenants, the job's own (404 when there is no such job)."""
    tenant = jobs_scope(request)
    return tenant if tenant is not None else (await find_job(request, job_id)).tenant


async def cancel_job(request: Request, job_id: str) -> Job:
    """Cancel a queued job now, ask a running one to stop; 409 if it already ended, unless
    its task fanned out: then the tree it started is cancelled (Store.cancel)."""
    svc = services(request)
    job = await svc.store.cancel(await acting_tenant(request, job_id), job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    root = job.workflow_id == job.id
    if job.status is JobState.RUNNING or root:
        svc.store.wake(Wake.CANCELLED)
    elif job.status is JobState.CANCELLED:
        svc.store.wake(Wake.SUBMITTED)  # a child that runs anyway may be queued now
    else:
        raise Conflict(f"job {job_id} already ended: {job.status.value}",
                       code="already_finished", status=job.status.value)
    return job


async def retry_job(request: Request, job_id: str) -> Job:
    """Re-queue a retrying, dead or cancelled job with fresh attempts; 409 otherwise."""
    svc = services(request)
    job, retried = await svc.store.retry(await acting_tenant(request, job_id), job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if not retried and job.unique and job.status in RETRYABLE_STATES:
        raise Conflict(f"job {job_id} is unique and a job of the same task and params is "
                       f"queued, running or waiting to retry; retry it once that one ends",
                       code="unique_job_live", status=job.status.value)
    if not retried:
        allowed = ", ".join(sorted(state.value for state in RETRYABLE_STATES))
        raise Conflict(f"job {job_id} is {job.status.value}; only {allowed} jobs can be "
                       f"retried", code="not_retryable", status=job.status.value)
    svc.store.wake(Wake.SUBMITTED)
    return job


class JobCollection(HTTPEndpoint):
    """`/api/jobs`: POST submits, GET lists (one endpoint, so a 405 names both in Allow)."""

    async def post(self, request: Request) -> JSONResponse:
        job, reused, headers = await submit_job(request)
        if prefer.wants_minimal(request):
            return submitted(job, reused, prefer.minimal(job), {**headers, **prefer.APPLIED})
        return submitted(job, reused, job.to_json(), headers)

    async def get(self, request: Request) -> JSONResponse:
        query = parse_list_query(request.query_params)
        svc = services(request)
        jobs, next_cursor = await svc.store.list_jobs(
            jobs_scope(request), **query, search_scan=svc.config.search_scan_rows)
        return JSONResponse({"jobs": [job.to_json() for job in jobs],
                             "next_cursor": None if next_cursor is None else str(next_cursor)})


async def get(request: Request) -> JSONResponse:
    return JSONResponse((await find_job(request, request.path_params["job_id"])).to_json())


async def cancel(request: Request) -> JSONResponse:
    job = await cancel_job(request, request.path_params["job_id"])
    return JSONResponse(job.to_json(), status_code=202 if job.status is JobState.RUNNING else 200)


async def cancel_matching(request: Request) -> JSONResponse:
    """Cancel the tenant's scheduled, queued and retrying jobs that match the body's
    filters, and ask its matching running ones to stop, in one transaction."""
    svc = services(request)
    filters = parse_bulk_cancel(await read_json(request, svc.config))
    cancelled, flagged = await svc.store.cancel_matching(tenant_of(request), **filters)
    if flagged:
        svc.store.wake(Wake.CANCELLED)
    if cancelled:
        svc.store.wake(Wake.SUBMITTED)  # children that run anyway may be queued now
    return JSONResponse({"cancelled": cancelled, "cancel_requested": flagged})


async def retry(request: Request) -> JSONResponse:
    job = await retry_job(request, request.path_params["job_id"])
    return JSONResponse(job.to_json(), headers={"Location": f"/api/jobs/{job.id}"})


async def retry_dead(request: Request) -> JSONResponse:
    svc = services(request)
    count = await svc.store.retry_dead(tenant_of(request))
    if count:
        svc.store.wake(Wake.SUBMITTED)
    return JSONResponse({"retried": count})


async def purge_dead(request: Request) -> JSONResponse:
    return JSONResponse({"purged": await services(request).store.purge_dead(tenant_of(request))})


routes = [
    Route("/api/jobs", JobCollection),
    Route("/api/jobs/cancel", cancel_matching, methods=["POST"]),
    Route("/api/jobs/{job_id}", get, methods=["GET"]),
    Route("/api/jobs/{job_id}/cancel", cancel, methods=["POST"]),
    Route("/api/jobs/{job_id}/retry", retry, methods=["POST"]),
    # The dead letters: list them with GET /api/jobs?status=dead.
    Route("/api/dead/retry", retry_dead, methods=["POST"]),
    Route("/api/dead", purge_dead, methods=["DELETE"]),
]
