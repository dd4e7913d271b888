"""The routes the existing ScholarSource frontend calls, over the same job logic as REST.

Bodies and answers are the REST ones plus `job_id`, the name the frontend reads.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource.api.jobs import cancel_job, find_job, submit_job, submitted
from scholarsource.store.base import Job, JobState


def _compat(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, **job.to_json()}


async def submit(request: Request) -> JSONResponse:
    job, created = await submit_job(request)
    return submitted(job, created, _compat(job))


async def status(request: Request) -> JSONResponse:
    return JSONResponse(_compat(await find_job(request, request.path_params["job_id"])))


async def cancel(request: Request) -> JSONResponse:
    job = await cancel_job(request, request.path_params["job_id"])
    return JSONResponse(_compat(job), status_code=202 if job.status is JobState.RUNNING else 200)


routes = [
    Route("/api/submit", submit, methods=["POST"]),
    Route("/api/status/{job_id}", status, methods=["GET"]),
    Route("/api/cancel/{job_id}", cancel, methods=["POST"]),
]
