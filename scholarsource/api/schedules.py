"""Routes for periodic jobs: list the config's schedules with their state, run one now, pause
and resume one. The schedules themselves come from the config; the store keeps their pause
and their jobs (GET /api/jobs?schedule=NAME lists those)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource.api.jobs import submitted
from scholarsource.api.schemas import parse_submit
from scholarsource.api.state import services
from scholarsource.api.tenancy import tenant_of
from scholarsource.config import Schedule
from scholarsource.errors import NotFound
from scholarsource.pool.scheduler import job_body, next_fire
from scholarsource.store.base import ScheduleState


def _schedule(request: Request) -> Schedule:
    name = request.path_params["name"]
    for schedule in services(request).config.schedules:
        if schedule.name == name:
            return schedule
    raise NotFound(f"no schedule named {name!r} in the config", code="schedule_not_found")


def schedule_json(schedule: Schedule, state: ScheduleState, now: float) -> dict[str, Any]:
    """A schedule as the API shows it: its definition, pause, next and last fire, and its
    latest job (fire times in seconds since the epoch)."""
    return {"name": schedule.name, "task": schedule.task, "params": schedule.params,
            "queue": schedule.queue or None, "priority": schedule.priority,
            "cron": schedule.cron or None, "every": schedule.every or None,
            "timezone": schedule.timezone, "catch_up": schedule.catch_up,
            "paused": state.paused,
            "next_fire": None if state.paused else next_fire(schedule, now),
            "last_fire": state.last_fire, "last_job_id": state.last_job_id,
            "last_status": None if state.last_status is None else state.last_status.value}


async def _json(request: Request, schedules: list[Schedule]) -> list[dict[str, Any]]:
    states = await services(request).store.schedule_states(
        tenant_of(request), [s.name for s in schedules])
    now = time.time()
    return [schedule_json(s, states[s.name], now) for s in schedules]


async def list_schedules(request: Request) -> JSONResponse:
    schedules = list(services(request).config.schedules)
    return JSONResponse({"schedules": await _json(request, schedules)})


async def trigger(request: Request) -> JSONResponse:
    """Run the schedule's job now, as a submit would (202 and the job). Marked as triggered,
    it is no fire of the schedule: the fire times keep their own jobs."""
    schedule = _schedule(request)
    svc = services(request)
    defaults = await svc.catalog.lookup(schedule.task)
    new = parse_submit(job_body(schedule), defaults, svc.config, tenant_of(request))
    job, reused = await svc.submits.submit(dataclasses.replace(
        new, schedule=schedule.name, scheduled_for=time.time(), triggered=True))
    return submitted(job, reused, job.to_json())


async def _set_paused(request: Request, paused: bool) -> JSONResponse:
    schedule = _schedule(request)
    await services(request).store.set_paused(schedule.name, paused, time.time())
    return JSONResponse((await _json(request, [schedule]))[0])


async def pause(request: Request) -> JSONResponse:
    return await _set_paused(request, True)


async def resume(request: Request) -> JSONResponse:
    return await _set_paused(request, False)


routes = [
    Route("/api/schedules", list_schedules, methods=["GET"]),
    Route("/api/schedules/{name}/trigger", trigger, methods=["POST"]),
    Route("/api/schedules/{name}/pause", pause, methods=["POST"]),
    Route("/api/schedules/{name}/resume", resume, methods=["POST"]),
]
