"""Periodic jobs: the pool submits each `[[schedules]]` entry's job at its fire times.

Fire times are computed, never remembered: `every` fires at the multiples of its period
since the epoch, `cron` at its expression's times in its timezone, so every pool (after a
restart, a reload, or a second master on a copy of the data) computes the same ones. A fire
is one transaction: the job's INSERT, which the store's unique (schedule, scheduled_for)
index turns into nothing if that fire already has its job, and the schedule's cursor moved
up to the fire. A crash before the commit leaves neither, so the next pool fires it once.

After downtime the fires missed in between are skipped; `catch_up = "latest"` runs the
latest of them once, `"none"` skips it too unless it is still on time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from scholarsource.api.schemas import parse_submit
from scholarsource.config import Config, Schedule
from scholarsource.errors import ApiError, StoreUnavailable, TaskError
from scholarsource.store.base import DEFAULT_TENANT, NewJob, Store, TaskDefaults

log = logging.getLogger("scholarsource.pool")

# With catch_up = "none", a fire still runs when the pool reaches it this late at most (or
# within half its period, if shorter); a later one was missed (downtime) and is skipped.
ON_TIME = 60.0
_RETRY = 1.0  # seconds before a refusing store is asked again


def next_fire(schedule: Schedule, after: float) -> float:
    """The first fire time strictly after `after` (seconds since the epoch)."""
    if schedule.every:
        return (math.floor(after / schedule.every) + 1) * schedule.every
    start = datetime.fromtimestamp(after, ZoneInfo(schedule.timezone))
    return float(croniter(schedule.cron, start).get_next(float))


def latest_fire(schedule: Schedule, until: float) -> float:
    """The last fire time at or before `until`."""
    if schedule.every:
        return math.floor(until / schedule.every) * schedule.every
    tz = ZoneInfo(schedule.timezone)
    before = float(croniter(schedule.cron, datetime.fromtimestamp(until, tz)).get_prev(float))
    following = next_fire(schedule, before)  # get_prev is strict: `until` may be a fire
    return following if following <= until else before


def job_body(schedule: Schedule) -> dict[str, Any]:
    """The schedule's job as a submit body (what it leaves out comes from the task)."""
    body: dict[str, Any] = {"task": schedule.task, "params": schedule.params,
                            "priority": schedule.priority}
    if schedule.queue:
        body["queue"] = schedule.queue
    return body


def plan_job(schedule: Schedule, tasks: Mapping[str, TaskDefaults], config: Config) -> NewJob:
    """The job `schedule` submits, checked as a submit is; TaskError naming the schedule if
    a submit of it would be refused (unknown task, bad params, queue or priority)."""
    try:
        new = parse_submit(job_body(schedule), tasks.get(schedule.task), config,
                           DEFAULT_TENANT, known_tasks=tasks)
    except ApiError as exc:
        raise TaskError(f"schedule {schedule.name!r}: {exc.message}") from None
    return dataclasses.replace(new, schedule=schedule.name)


def check_schedules(config: Config, tasks: Mapping[str, TaskDefaults]) -> None:
    """At pool boot: every schedule's job can be submitted (TaskError otherwise)."""
    for schedule in config.schedules:
        plan_job(schedule, tasks, config)


class Scheduler:
    """Fires the config's schedules from the dispatcher's housekeeping; `due` says when."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.schedules = config.schedules
        self._since = time.time()  # a schedule seen for the first time fires after this
        self._next: float | None = 0.0 if self.schedules else None  # wall clock
        self._jobs: dict[str, NewJob] = {}

    def due(self) -> bool:
        """True when a fire may be due (or a refusing store is to be asked again)."""
        return self._next is not None and time.time() >= self._next

    def deadlines(self) -> list[float]:
        """When the dispatcher should wake for the next fire (time.monotonic())."""
        if self._next is None:
            return []
        return [time.monotonic() + self._next - time.time()]

    async def run(self, store: Store) -> None:
        """Fire whatever is due, then note when the next fire is."""
        now = time.time()
        try:
            if not self._jobs:
                tasks = await store.tasks()
                self._jobs = {s.name: plan_job(s, tasks, self.config) for s in self.schedules}
            states = await store.schedule_states(DEFAULT_TENANT, list(self._jobs))
            for schedule in self.schedules:
                state = states[schedule.name]
                cursor = state.cursor
                if cursor is None:  # new: record from when it counts
                    cursor = self._since
                    await store.fire(None, schedule.name, cursor)
                if not state.paused:
                    await self._fire(store, schedule, cursor, now)
        except StoreUnavailable as exc:
            log.warning("cannot fire schedules now: %s", exc)
            self._next = now + _RETRY
            return
        self._next = min(next_fire(s, now) for s in self.schedules)

    async def _fire(self, store: Store, schedule: Schedule, cursor: float,
                    now: float) -> None:
        fire = latest_fire(schedule, now)
        if fire <= cursor:
            return
        late = now - fire > min(ON_TIME, (next_fire(schedule, fire) - fire) / 2)
        if late and schedule.catch_up == "none":
            log.info("schedule %s: skipped its fire of %s (missed; catch_up = none)",
                     schedule.name, _when(fire))
            await store.fire(None, schedule.name, fire)
            return
        new = dataclasses.replace(self._jobs[schedule.name], scheduled_for=fire)
        job = await store.fire(new, schedule.name, fire)
        if job is not None:
            log.info("schedule %s: job %s queued for its fire of %s", schedule.name, job.id,
                     _when(fire))


def _when(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")
