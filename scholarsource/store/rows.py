"""Rows as both stores return them, shaped into the contract's records, and the new jobs both
insert. The stores select the same columns in the same order, so one shaping serves both;
no SQL lives here."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import string
import time
from collections.abc import Iterable
from typing import Any

from scholarsource.keys import ApiKey
from scholarsource.limits import Rate
from scholarsource.quotas import Level, QuotaState, TenantOverride
from scholarsource.store.base import (
    Artifact,
    Claim,
    Event,
    Job,
    JobState,
    NewJob,
    Outcome,
    QueueStats,
    ScheduleState,
    TaskDefaults,
    Watch,
    Watched,
    WorkflowInfo,
)
from scholarsource.store.frozen import built

# A job id starts with its creation time, in milliseconds, as _STAMP_CHARS digits of this
# alphabet, which is in ASCII order: ids then sort as their times do, and each insert lands
# at the end of the unique index on ids. Random ids landed anywhere in it, and every job of a
# batch wrote one more index page: SQLite's CPU per job of a 1,000-job batch rose from 17 us
# to 35 us as the table grew to 200,000 jobs, against a flat 14 us with ordered ids
# (bench/results/2026-12-05-batch-profile/).
_STAMP_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase
_STAMP_CHARS = 8  # 62**8 ms: until the year 8900


def _stamp(now: float) -> str:
    ms, digits = int(now * 1000), []
    for _ in range(_STAMP_CHARS):
        ms, digit = divmod(ms, len(_STAMP_DIGITS))
        digits.append(_STAMP_DIGITS[digit])
    return "".join(reversed(digits))


def new_job_ids(n: int, now: float | None = None) -> list[str]:
    """`n` public ids for jobs created at `now` (default: now): the time's stamp, then 128
    random bits, URL-safe (30 characters). Unguessable and never a row counter; never
    starting with "-" either, which a command line would take for an option
    (`scholarsource status -Dx...`). One read of the OS's random source serves them all."""
    stamp = _stamp(time.time() if now is None else now)
    raw = secrets.token_bytes(16 * n)
    return [stamp + base64.urlsafe_b64encode(raw[at:at + 16]).rstrip(b"=").decode()
            for at in range(0, 16 * n, 16)]


def new_job_id() -> str:
    """One new public id (see new_job_ids)."""
    return new_job_ids(1)[0]


def like_pattern(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def job_from_row(row: Iterable[Any]) -> Job:
    """A job from a row of the stores' job columns, in their order."""
    (id_, tenant, task, queue, priority, status, params, result, error, error_code, attempts,
     max_attempts, failures, crashes, timeout, memory_limit, backoff_base, backoff_max,
     progress, progress_message, cancel_requested, created_at, started_at, finished_at,
     run_at, peak_rss, cpu_time, history, idempotency_key, cache_ttl, bypass_cache,
     unique, schedule, scheduled_for, concurrency_key, concurrency_limit, depends_on,
     on_parent_failure, workflow_id, step, parent_id) = row
    return Job(id=id_, tenant=tenant, task=task, queue=queue, priority=priority,
               status=JobState(status), params=json.loads(params),
               result=None if result is None else json.loads(result), error=error,
               error_code=error_code, attempts=attempts, max_attempts=max_attempts,
               failures=failures, crashes=crashes, timeout=timeout,
               memory_limit=memory_limit, backoff_base=backoff_base,
               backoff_max=backoff_max, progress=progress, progress_message=progress_message,
               cancel_requested=bool(cancel_requested), created_at=created_at,
               started_at=started_at, finished_at=finished_at, run_at=run_at,
               peak_rss=peak_rss, cpu_time=cpu_time, attempts_history=json.loads(history),
               idempotency_key=idempotency_key, cache_ttl=cache_ttl,
               bypass_cache=bool(bypass_cache), unique=bool(unique), schedule=schedule,
               scheduled_for=scheduled_for, concurrency_key=concurrency_key,
               concurrency_limit=concurrency_limit,
               depends_on=[] if depends_on is None else json.loads(depends_on),
               on_parent_failure=on_parent_failure, workflow_id=workflow_id, step=step,
               parent_id=parent_id)


def _first_state(new: NewJob, waits: bool) -> JobState:
    """A new job's state: waiting for its parents, for its run_at, or queued."""
    if new.depends_on:
        return JobState.WAITING
    return JobState.SCHEDULED if waits else JobState.QUEUED


def job_with_artifacts(row: list[Any] | tuple[Any, ...]) -> Job:
    """A job from the job columns followed by its artifacts as JSON text (an array of
    [name, size, sha256, content_type, path], by name), as both stores' GET read them."""
    return dataclasses.replace(job_from_row(row[:-1]), artifacts=[
        Artifact(*entry) for entry in json.loads(row[-1] or "[]")])


def artifacts_from_rows(rows: Iterable[Any]) -> dict[str, list[Artifact]]:
    """Rows of (job_id, name, size, sha256, content_type, path), by job."""
    found: dict[str, list[Artifact]] = {}
    for job_id, *fields in rows:
        found.setdefault(job_id, []).append(Artifact(*fields))
    return found


def artifact_batch(outcomes: Iterable[Outcome], succeeded: set[str]) -> list[dict[str, Any]]:
    """The artifacts of the outcomes that `finish` recorded as successes, as the stores'
    artifact inserts read them."""
    return [{"job_id": o.job_id, "name": a.name, "size": a.size, "sha256": a.sha256,
             "content_type": a.content_type, "path": a.path}
            for o in outcomes if o.job_id in succeeded for a in o.artifacts]


# The fields of a job not yet started, as every new job has them (the others come from its
# NewJob: see new_jobs).
_UNSTARTED: dict[str, Any] = {
    "result": None, "error": None, "error_code": None, "attempts": 0, "failures": 0,
    "crashes": 0, "progress": None, "progress_message": None, "cancel_requested": False,
    "started_at": None, "finished_at": None, "peak_rss": None, "cpu_time": None,
    "artifacts": None}


def new_jobs(news: list[NewJob]) -> list[Job]:
    """The jobs a submit of `news` inserts, with fresh ids, all created now."""
    now = time.time()
    fresh = iter(new_job_ids(sum(1 for new in news if not new.id), now))
    jobs = []
    for new in news:
        # A run_at already come is no wait: the job is queued, and run_at stays for waiters
        # only (a job waits for its run_at or its parents, never both: the API refuses that).
        waits = new.run_at is not None and new.run_at > now and not new.depends_on
        jobs.append(built(Job, {
            **_UNSTARTED, "id": new.id or next(fresh), "tenant": new.tenant,
            "task": new.task, "queue": new.queue, "priority": new.priority,
            "status": _first_state(new, waits), "params": new.params,
            "max_attempts": new.max_attempts, "timeout": new.timeout,
            "memory_limit": new.memory_limit, "backoff_base": new.backoff_base,
            "backoff_max": new.backoff_max, "created_at": now,
            "run_at": new.run_at if waits else None, "attempts_history": [],
            "idempotency_key": new.idempotency_key, "cache_ttl": new.cache_ttl,
            "bypass_cache": new.bypass_cache, "unique": new.unique, "schedule": new.schedule,
            "scheduled_for": new.scheduled_for, "concurrency_key": new.concurrency_key,
            "concurrency_limit": new.concurrency_limit, "depends_on": list(new.depends_on),
            "on_parent_failure": new.on_parent_failure, "workflow_id": new.workflow_id,
            "step": new.step, "parent_id": new.parent_id}))
    return jobs


def claims_from_rows(rows: Iterable[Any]) -> list[Claim]:
    """Claims from the claim's RETURNING rows."""
    return [Claim(id=id_, task=task, params_json=params, attempt=attempt,
                  max_attempts=max_attempts, timeout=timeout, token=token,
                  failures=failures, memory_limit=memory_limit, backoff_base=base,
                  backoff_max=cap, queue=queue, crashes=crashes, created_at=created_at,
                  tenant=tenant, has_parents=bool(has_parents))
            for (id_, task, params, attempt, max_attempts, timeout, token, failures,
                 memory_limit, base, cap, queue, crashes, created_at, tenant,
                 has_parents) in rows]


def tasks_from_rows(rows: Iterable[Any]) -> dict[str, TaskDefaults]:
    """The published registry from the rows of `tasks`."""
    return {name: TaskDefaults(name, queue, timeout, attempts, memory, limit, base, cap,
                               None if params is None else json.loads(params),
                               cache_ttl, bool(unique), rate, window, concurrency)
            for name, queue, timeout, attempts, memory, limit, base, cap, params,
            cache_ttl, unique, rate, window, concurrency in rows}


def queue_stats_from_rows(depths: Iterable[Any], finishes: Iterable[Any]) -> list[QueueStats]:
    """Per queue, by name: (queue, status, count, oldest) depth rows and (queue, count)
    finish rows together."""
    stats: dict[str, QueueStats] = {}
    for queue, status, n, oldest in depths:
        row = stats.setdefault(queue, QueueStats(queue))
        setattr(row, status, n)
        if status == "queued":
            row.oldest_queued_at = oldest
    for queue, n in finishes:
        stats.setdefault(queue, QueueStats(queue)).finished = n
    return sorted(stats.values(), key=lambda row: row.name)


def schedule_states_from_rows(rows: Iterable[Any]) -> dict[str, ScheduleState]:
    """Each schedule's state from (name, paused, cursor, job id, status, fire) rows."""
    return {name: ScheduleState(name, bool(paused), cursor, job_id,
                                None if status is None else JobState(status), fired)
            for name, paused, cursor, job_id, status, fired in rows}


def watch_params(watches: list[Watch]) -> str:
    """The watches as the JSON array both stores' WATCH statement reads: [job_id, tenant,
    after] each, in order."""
    return json.dumps([[w.job_id, w.tenant, w.after] for w in watches])


def watched_from_rows(watches: list[Watch], rows: Iterable[Any]) -> list[Watched]:
    """WATCH's rows (position from 1, status, then seq, at, kind, data: NULL with no event)
    as one Watched per watch, in order."""
    statuses: dict[int, JobState | None] = {}
    events: dict[int, list[Event]] = {}
    for pos, status, seq, at, kind, data in rows:
        statuses[pos] = None if status is None else JobState(status)
        if seq is not None:
            events.setdefault(pos, []).append(Event(seq=seq, job_id=watches[pos - 1].job_id,
                                                    at=at, kind=kind, data=json.loads(data)))
    return [Watched(statuses.get(pos), events.get(pos, []))
            for pos in range(1, len(watches) + 1)]


def override_from_row(limit: int | None, window: float | None, max_queued: int | None,
                      weight: int | None) -> TenantOverride:
    """A tenant_limits row (either store's) as a TenantOverride."""
    rate = None if limit is None or window is None else Rate(int(limit), float(window))
    return TenantOverride(rate, None if max_queued is None else int(max_queued),
                          None if weight is None else int(weight))


def quota_state_from_rows(rows: list[Any]) -> QuotaState:
    """QUOTA_STATE's rows (either store's) as a QuotaState."""
    state = QuotaState({}, {}, {})
    for kind, name, a, b, c, d in rows:
        if kind == 0:
            state.overrides[name] = override_from_row(a, b, c, d)
        elif kind == 1:
            state.live[name] = int(a)
        else:
            state.levels[name] = Level(float(a), float(b))
    return state


def key_from_row(row: Iterable[Any]) -> ApiKey:
    """An API key from its row (id, tenant, role, name, rate, created_at, revoked_at, digest)."""
    key_id, tenant, role, name, rate, created_at, revoked_at, digest = row
    return ApiKey(key_id, tenant, role, name, rate, created_at, revoked_at, digest)


def workflows_from_rows(rows: Iterable[Any]) -> list[WorkflowInfo]:
    """Rows of (workflow id, created_at, status, count), newest workflow first, as a list."""
    found: dict[str, WorkflowInfo] = {}
    for workflow_id, created_at, status, count in rows:
        info = found.setdefault(workflow_id, WorkflowInfo(workflow_id, created_at, {}))
        info.counts[status] = count
    return list(found.values())
