"""Workflows: many jobs and their dependencies in one request and one transaction.

POST /api/workflows creates every step (api/workflow_plan.py validates them first);
GET /api/workflows lists the tenant's latest; GET /api/workflows/{id} sums its steps up;
/events streams every step's events; /cancel cancels every step not yet final. A workflow
is its jobs (they carry its id and their step name): nothing else is
stored, and another tenant's workflow is as unknown as no workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from scholarsource.api.events import KEEPALIVE_INTERVAL, frame, start_after
from scholarsource.api.fanout import Feed
from scholarsource.api.jobs import parse_new_job
from scholarsource.api.schemas import parse_workflow_list_query, read_json
from scholarsource.api.state import services
from scholarsource.api.submits import ask_of
from scholarsource.api.tenancy import principal_of, tenant_of
from scholarsource.api.workflow_plan import plan
from scholarsource.errors import NotFound, StoreUnavailable
from scholarsource.store.base import Event, Job, JobState, NewJob, Wake, WorkflowInfo

# How often a workflow's stream looks for jobs its tasks added (one indexed read).
RESCAN_INTERVAL = 1.0


def status_of(jobs: list[Job]) -> str:
    """running while a step may still run; then succeeded if every step did, failed if one
    ended dead, else cancelled."""
    return status_of_counts(Counter(job.status.value for job in jobs))


def status_of_counts(counts: Mapping[str, int]) -> str:
    """status_of, from how many steps are in each state."""
    states = {JobState(state) for state, n in counts.items() if n}
    if not all(state.final for state in states):
        return "running"
    if states <= {JobState.SUCCEEDED}:
        return "succeeded"
    return "failed" if JobState.DEAD in states else "cancelled"


def summary(workflow_id: str, jobs: list[Job]) -> dict[str, Any]:
    """A workflow's JSON: its status, its progress over all steps (a final step counts
    whole, a running one by its own progress), and each step."""
    # A job in the workflow without a step name (one a step's task submitted) shows by id.
    names = {job.id: job.step or job.id for job in jobs}
    done = sum(1 for job in jobs if job.status.final)
    fraction = sum(1.0 if job.status.final else job.progress or 0.0 for job in jobs) / len(jobs)
    status = status_of(jobs)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    return {
        "id": workflow_id, "status": status, "final": status != "running",
        "progress": {"done": done, "total": len(jobs), "fraction": round(fraction, 4)},
        "counts": counts, "created_at": min(job.created_at for job in jobs),
        "steps": {names[job.id]: {
            "id": job.id, "task": job.task, "status": job.status.value,
            "final": job.status.final,
            "after": [names[p] for p in job.depends_on if p in names],
            "depends_on": job.depends_on, "parent_id": job.parent_id,
            "result": job.result, "error": job.error,
            "error_code": job.error_code, "progress": job.progress,
            "started_at": job.started_at, "finished_at": job.finished_at}
            for job in jobs},
    }


async def _steps(request: Request) -> list[Job]:
    """The tenant's steps of the workflow in the path, or 404. A job that has not submitted
    a child yet is the whole of the tree it may grow (ctx.submit makes its id the tree's
    workflow id): its workflow is itself alone."""
    workflow_id, tenant = request.path_params["workflow_id"], tenant_of(request)
    store = services(request).store
    jobs = await store.workflow(tenant, workflow_id)
    if not jobs and (root := await store.get(tenant, workflow_id)) is not None:
        if root.workflow_id is None:
            jobs = [root]
        elif root.workflow_id == workflow_id:  # its first child came in between the reads
            jobs = await store.workflow(tenant, workflow_id)
    if not jobs:
        raise NotFound(f"no workflow {workflow_id!r}")
    return jobs


async def create(request: Request) -> JSONResponse:
    """Validate every step, then create them all in one transaction (quotas count each)."""
    svc = services(request)

    async def parse_step(body: dict[str, Any]) -> NewJob:
        return await parse_new_job(request, body, None)

    made = await plan(await read_json(request, svc.config, around=3), parse_step,
                      max_steps=svc.config.max_workflow_steps,
                      max_parents=svc.config.max_parents)
    await svc.submits.admit(ask_of(principal_of(request)), made.jobs, batch=True)
    return JSONResponse({"id": made.id, "steps": made.steps}, status_code=201,
                        headers={"Location": f"/api/workflows/{made.id}"})


async def listing(request: Request) -> JSONResponse:
    """The tenant's latest workflows, newest first: id, status, step counts, created."""
    limit = parse_workflow_list_query(request.query_params)
    found = await services(request).store.workflows(tenant_of(request), limit)
    return JSONResponse({"workflows": [_listed(info) for info in found]})


def _listed(info: WorkflowInfo) -> dict[str, Any]:
    status = status_of_counts(info.counts)
    done = sum(n for state, n in info.counts.items() if JobState(state).final)
    return {"id": info.id, "status": status, "final": status != "running",
            "steps": info.steps, "done": done, "counts": info.counts,
            "created_at": info.created_at}


class WorkflowCollection(HTTPEndpoint):
    """`/api/workflows`: POST creates, GET lists (one endpoint, so a 405 names both in
    Allow)."""

    async def post(self, request: Request) -> JSONResponse:
        return await create(request)

    async def get(self, request: Request) -> JSONResponse:
        return await listing(request)


async def get(request: Request) -> JSONResponse:
    return JSONResponse(summary(request.path_params["workflow_id"], await _steps(request)))


async def cancel(request: Request) -> JSONResponse:
    """Cancel every step not yet final (a running one is asked to stop); the workflow
    after."""
    svc = services(request)
    workflow_id, tenant = request.path_params["workflow_id"], tenant_of(request)
    steps = await _steps(request)
    if steps[0].id == workflow_id and steps[0].workflow_id is None:  # a root alone, yet
        job = await svc.store.cancel(tenant, workflow_id)
        flagged = int(job is not None and job.status is JobState.RUNNING)
        cancelled = int(job is not None and job.status is JobState.CANCELLED
                        and not steps[0].status.final)
    else:
        cancelled, flagged = await svc.store.cancel_workflow(tenant, workflow_id)
    if flagged:
        svc.store.wake(Wake.CANCELLED)
    if cancelled:
        svc.store.wake(Wake.SUBMITTED)  # children elsewhere that run anyway may be queued
    jobs = await _steps(request)
    return JSONResponse({**summary(workflow_id, jobs), "cancelled": cancelled,
                         "cancel_requested": flagged},
                        status_code=202 if flagged else 200)


async def _take_any(feeds: list[Feed], timeout: float) -> list[Event]:
    """Whatever any open feed holds, waiting up to `timeout` for one of them; oldest first.
    The reader fills every feed in one read, so one wake-up finds the others' events too."""
    waiting = {asyncio.ensure_future(feed.take(timeout)): feed for feed in feeds}
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    events = [event for task in done for event in task.result()]
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        events += await waiting[task].take(0)
    return sorted(events, key=lambda event: event.seq)


async def events(request: Request) -> StreamingResponse:
    """Every step's events as one Server-Sent Events stream (each names its step), live
    until every step is final; Last-Event-ID resumes as a job's stream does. A tree grown
    from inside its tasks (ctx.submit, ctx.continue_with) gains jobs while it runs: the
    stream looks for new ones every RESCAN_INTERVAL seconds, and once more before it ends."""
    jobs = await _steps(request)  # 404 before the stream starts
    after = start_after(request)
    store, reader = services(request).store, services(request).reader
    tenant, workflow_id = tenant_of(request), request.path_params["workflow_id"]
    names: dict[str, str] = {}
    feeds: dict[str, Feed] = {}

    def follow(found: list[Job]) -> None:
        for job in found:
            if job.id not in feeds:
                names[job.id] = job.step or job.id
                feeds[job.id] = reader.subscribe(tenant, job.id, after)

    async def stream() -> AsyncIterator[str]:
        follow(jobs)
        loop = asyncio.get_running_loop()
        quiet_since = rescan_at = loop.time()
        try:
            while True:
                open_feeds = [feed for feed in feeds.values() if not feed.closed]
                batch = await _take_any(open_feeds or list(feeds.values()), RESCAN_INTERVAL)
                for event in batch:
                    yield frame(event, step=names[event.job_id])
                if batch:
                    quiet_since = loop.time()
                ended = not batch and not any(not feed.closed for feed in feeds.values())
                if ended or loop.time() >= rescan_at:
                    rescan_at = loop.time() + RESCAN_INTERVAL
                    try:
                        follow(await store.workflow(tenant, workflow_id))
                    except StoreUnavailable:
                        # The next look decides (a client meanwhile misses nothing); not at
                        # once: with every feed closed, nothing else would wait.
                        await asyncio.sleep(RESCAN_INTERVAL)
                        continue
                    if ended and any(not feed.closed for feed in feeds.values()):
                        continue  # new jobs came: follow them too
                if ended:
                    if any(feed.dropped for feed in feeds.values()):
                        yield ": behind: resume with Last-Event-ID\n\n"
                    return
                if loop.time() - quiet_since >= KEEPALIVE_INTERVAL:
                    quiet_since = loop.time()
                    yield ": keep-alive\n\n"
        finally:
            for feed in feeds.values():
                reader.unsubscribe(feed)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


routes = [
    Route("/api/workflows", WorkflowCollection),
    Route("/api/workflows/{workflow_id}", get, methods=["GET"]),
    Route("/api/workflows/{workflow_id}/events", events, methods=["GET"]),
    Route("/api/workflows/{workflow_id}/cancel", cancel, methods=["POST"]),
]
