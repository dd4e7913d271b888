"""The routes the existing ScholarSource frontend calls, over the same job logic as REST.

Answers are the REST ones plus `job_id`, the name the frontend reads. A submit body is the
REST envelope, or (no `task` in it) the frontend's own form: the params of `compat_task`,
whose `compat_concurrency_key` field, if set, names the user whose jobs run one at a time.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource.api.jobs import cancel_job, find_job, submit_job, submitted
from scholarsource.api.state import services
from scholarsource.errors import ValidationFailed
from scholarsource.store.base import Job, JobState


def _compat(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, **job.to_json()}


def envelope(body: Any, compat_task: str, key_field: str = "") -> Any:
    """A body that names no `task` is the frontend's form: the params of `compat_task`,
    with its `bypass_cache` taken out and honoured, and its `key_field` (a user id, say)
    taken out as the concurrency key: who asks decides when the job runs, not what it
    computes, so the same course asked for by two users is one cached analysis. Any other
    body is left as it is."""
    if not isinstance(body, dict) or "task" in body:
        return body
    if not compat_task:
        raise ValidationFailed("the body names no task; set compat_task in the config to the "
                               "task that such a body (the frontend's form) should run",
                               code="compat_task_not_set", setting="compat_task")
    params = dict(body)
    # parse_submit checks bypass_cache and concurrency_key as it does in an envelope.
    wrapped = {"task": compat_task, "params": params,
               "bypass_cache": params.pop("bypass_cache", None)}
    key = params.pop(key_field, None) if key_field else None
    if key is not None:
        # A numeric user id is a key too; anything else is refused by parse_submit.
        is_number = isinstance(key, int) and not isinstance(key, bool)
        wrapped["concurrency_key"] = str(key) if is_number else key
    return wrapped


async def submit(request: Request) -> JSONResponse:
    config = services(request).config
    unwrap = functools.partial(envelope, compat_task=config.compat_task,
                               key_field=config.compat_concurrency_key)
    job, reused, headers = await submit_job(request, unwrap)
    return submitted(job, reused, _compat(job), headers)


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
