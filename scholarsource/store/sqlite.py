"""The SQLite store: every SQLite statement and pragma ScholarSource runs lives here.

Each process opens its own connection (after any fork). The connection runs in autocommit
mode so a single-statement operation is one round trip (`INSERT ... RETURNING`); operations of
several statements take the write lock up front with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, ParamSpec, Protocol, TypeVar

import aiosqlite

from scholarsource.errors import StoreUnavailable
from scholarsource.findings import Check, Status
from scholarsource.keys import ApiKey
from scholarsource.quotas import Ask, Level, QuotaPolicy, QuotaState, TenantOverride
from scholarsource.store import busy
from scholarsource.store.admission import Admission, Guard, QuotaTx, admit
from scholarsource.store.base import (
    CARRIED_COLUMNS,
    LIVE_STATES,
    OPEN,
    POOL_FORGET_SECONDS,
    QUEUE_COUNT_STATES,
    WAITING_STATES,
    Artifact,
    BackupResult,
    Carried,
    Claim,
    ErrorCode,
    Event,
    Finished,
    Gate,
    Imported,
    Job,
    JobState,
    NewJob,
    Note,
    Outcome,
    PoolInfo,
    QueueStats,
    RateStats,
    Reused,
    ScheduleState,
    SchemaVersion,
    Spawn,
    Storage,
    Store,
    TaskDefaults,
    Wake,
    WakeSource,
    Watch,
    Watched,
    WorkflowInfo,
)
from scholarsource.store.deps import depths, links_json, with_parents
from scholarsource.store.fanout import continuations, named, over_quota, placed, root_cancelled
from scholarsource.store.rows import (
    artifact_batch,
    artifacts_from_rows,
    claims_from_rows,
    job_with_artifacts,
    key_from_row,
    override_from_row,
    queue_stats_from_rows,
    quota_state_from_rows,
    schedule_states_from_rows,
    tasks_from_rows,
    watch_params,
    watched_from_rows,
    workflows_from_rows,
)
from scholarsource.store.rows import job_from_row as _job
from scholarsource.store.rows import like_pattern as _like
from scholarsource.store.rows import new_jobs as _new_jobs
from scholarsource.store.rules import spared_cause
from scholarsource.store.schema import SCHEMA_VERSION
from scholarsource.store.sqlite_backup import copy_database
from scholarsource.store.sqlite_checks import RESTORE
from scholarsource.store.wakeup import Listener, Waker

P = ParamSpec("P")
R = TypeVar("R")

# sqlite3 adapts each bound value that is not exactly an int, float, str or bytearray: for
# None and bool, with no adapter registered, it asks its PrepareProtocol type for
# `__adapt__`, which raises and clears an AttributeError per value (~0.6 us; a job's row
# binds about 16 of them: its NULL columns and flags). A registered adapter is one dict
# probe instead. What gets bound is unchanged: NULL, and 0 or 1. (Process-wide, like every
# sqlite3 adapter.)
sqlite3.register_adapter(type(None), lambda value: value)
sqlite3.register_adapter(bool, int)

_JOB_COLUMNS = ("id, tenant, task, queue, priority, status, params, result, error, error_code, "
                "attempts, max_attempts, failures, crashes, timeout, memory_limit, "
                "backoff_base, backoff_max, progress, progress_message, cancel_requested, "
                "created_at, started_at, finished_at, run_at, peak_rss, cpu_time, history, "
                "idempotency_key, cache_ttl, bypass_cache, unique_job, schedule, scheduled_for, "
                "concurrency_key, concurrency_limit, depends_on, on_parent_failure, workflow_id, "
                "step, parent_id")

_INSERT = """INSERT INTO jobs (id, tenant, task, queue, priority, params, max_attempts,
    timeout, created_at, memory_limit, backoff_base, backoff_max, idempotency_key, fingerprint,
    cache_ttl, bypass_cache, unique_job, status, run_at, schedule, scheduled_for, triggered,
    concurrency_key, concurrency_limit, depends_on, on_parent_failure, waiting_for,
    workflow_id, step, parent_id) """
_ROW_VALUES = 30  # one job's values, in _INSERT's order (`_row`)
_ROW = "(" + ", ".join("?" * _ROW_VALUES) + ")"
# At most this many jobs go in one INSERT (30 bound values each, far under SQLite's limit
# of 32,766): the API's group commit sends no more (api/submits.py).
SUBMIT_ROWS = 256


@functools.cache
def submit_sql(n: int) -> str:
    """The INSERT of `n` jobs as one multi-row VALUES. Bound values, not a JSON array read
    with json_each: SQLite 3.40 parses a row's JSON again for each of its 24 columns
    (measured: 17 against 28 us of CPU per job in batches of 16, 56 against 65 alone)."""
    return _INSERT + "VALUES " + ", ".join([_ROW] * n)


# The API's and the pool's inserts of a varying number of jobs bind them padded up to a
# power of two (rows with a NULL id insert nothing): each row count is a statement of its
# own in the connection's cache, and a prepared INSERT of 256 rows takes ~0.7 MB, so every
# count up to 256 could hold ~90 MB per connection; nine sizes hold ~1.4 MB.
_PADDED = " WHERE column1 IS NOT NULL"


@functools.cache
def insert_sql(n: int, once: bool) -> str:
    """The INSERT of `n` rows (padding among them), as a SELECT so that padding is left out;
    `once`: leaving out each job whose unique key a job already holds, RETURNING the ids
    inserted."""
    sql = _INSERT + "SELECT * FROM (VALUES " + ", ".join([_ROW] * n) + ")" + _PADDED
    return sql + " ON CONFLICT DO NOTHING RETURNING id" if once else sql


def padded(rows: list[tuple[Any, ...]]) -> tuple[int, list[Any]]:
    """The statement size for `rows` (guarded_size) and their values, padded to it."""
    size = guarded_size(len(rows))
    return size, [value for row in rows for value in row] + [None] * (
        _ROW_VALUES * (size - len(rows)))


# The quick path of admission (store/admission.py: Guard): the same rows, inserted only if
# the tenants have no rate or max_queued stored and stay within their max_queued and the
# server's, read from tenant_live by the same statement. Bound after the rows: the tenants
# (JSON), the new jobs in all and the server's cap, and [tenant, new jobs, cap] per capped
# tenant (JSON). Rows with a NULL id are padding (see GUARDED_SIZES).
_GUARD = f"""{_PADDED} AND NOT EXISTS (SELECT 1 FROM tenant_limits
    WHERE tenant IN (SELECT value FROM json_each(?))
    AND (rate_limit IS NOT NULL OR max_queued IS NOT NULL))
AND (SELECT coalesce(sum(live), 0) FROM tenant_live) + ? <= ?
AND NOT EXISTS (SELECT 1 FROM json_each(?) AS c
    WHERE coalesce((SELECT live FROM tenant_live WHERE tenant = c.value ->> 0), 0)
        + (c.value ->> 1) > c.value ->> 2)
RETURNING 1"""
_NO_CAP = 2**62


# A batch (api/batch.py) takes the quick path too, up to the largest of these sizes, as one
# statement: one round trip, and SQLite's write lock held only while the statement runs, not
# across the awaits of a transaction, where the event loop may be validating another batch
# meanwhile while the other API workers wait for the lock. Past SUBMIT_ROWS the rows are
# padded up to the next size, so that a connection caches at most these two statements more
# (a prepared 1,000-row INSERT takes ~2.7 MB). 1,024 rows bind 30,724 values: under SQLite's
# limit of 32,766.
GUARDED_SIZES = (512, 1024)


@functools.cache
def submit_guarded_sql(n: int) -> str:
    """The INSERT of `n` jobs under a Guard (see _GUARD)."""
    return _INSERT + "SELECT * FROM (VALUES " + ", ".join([_ROW] * n) + ")" + _GUARD


def guarded_size(n: int) -> int:
    """The rows of the padded INSERT that carries `n` jobs: the next power of two up to
    SUBMIT_ROWS, then the next of GUARDED_SIZES."""
    if n <= SUBMIT_ROWS:
        return 1 << max(n - 1, 0).bit_length()
    return next(size for size in GUARDED_SIZES if size >= n)


BY_KEY = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = ? AND idempotency_key = ?"
# The result cache: the newest job of the tenant with this fingerprint that succeeded since
# the bound time (a probe of jobs_cached). Bound: tenant, fingerprint, since.
_CACHED_WHERE = ("tenant = ? AND fingerprint = ? AND status = 'succeeded' "
                 "AND finished_at >= ?")
# INDEXED BY: retention's jobs_expiry (status, finished_at) also matches, and without
# statistics SQLite may take it, a range over every success of the window.
CACHED = (f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_cached WHERE {_CACHED_WHERE} "
          f"ORDER BY finished_at DESC LIMIT 1")
# A unique job's live twin (a probe of jobs_unique_live, whose predicate this repeats).
_LIVE = ", ".join(f"'{state}'" for state in LIVE_STATES)
LIVE_TWIN = (f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = ? AND fingerprint = ? "
             f"AND unique_job = 1 AND status IN ({_LIVE})")
# The insert for one job that must not duplicate another, in one statement (so the check
# and the insert are one write transaction, even on the API's shared connection): a key the
# tenant already used, or a unique job's live twin (jobs_unique_live), makes it insert
# nothing; so does, with {cached}, a cached result. (SQLite wants a WHERE in an upsert's
# SELECT, so that ON is not read as a join's.)
_SUBMIT_ONCE = (_INSERT + "SELECT " + _ROW[1:-1] + " WHERE true{cached} "
                "ON CONFLICT DO NOTHING RETURNING id")
SUBMIT_ONCE = _SUBMIT_ONCE.format(cached="")
SUBMIT_UNCACHED = _SUBMIT_ONCE.format(
    cached=f" AND NOT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_cached WHERE {_CACHED_WHERE})")
# A schedule's fire: its job, unless the schedule is paused or the fire already has one
# (jobs_fire), then its cursor moved up to the fire (both in one transaction).
FIRE = _SUBMIT_ONCE.format(
    cached=" AND NOT EXISTS (SELECT 1 FROM schedules WHERE name = ? AND paused = 1)")
FIRE_CURSOR = ("INSERT INTO schedules (name, cursor) VALUES (?, ?) ON CONFLICT (name) "
               "DO UPDATE SET cursor = max(cursor, excluded.cursor)")
# Each named schedule's row (if any) and its tenant's latest job (jobs_tenant_schedule).
SCHEDULE_STATES = """
SELECT n.value, s.paused, s.cursor, j.id, j.status, j.scheduled_for
FROM json_each(:names) AS n
LEFT JOIN schedules AS s ON s.name = n.value
LEFT JOIN jobs AS j ON j.seq = (SELECT seq FROM jobs WHERE tenant = :tenant
                                AND schedule = n.value ORDER BY seq DESC LIMIT 1)
ORDER BY n.key
"""
# A resume moves the cursor to now: the fires a pause skipped are not caught up.
SET_PAUSED = ("INSERT INTO schedules (name, paused, cursor) VALUES (:name, :paused, :now) "
              "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, cursor = "
              "CASE WHEN paused AND NOT excluded.paused THEN max(cursor, :now) ELSE cursor END")
# A job alone comes with its artifacts, by name: an index range of their primary key.
_ARTIFACTS_OF_JOB = ("(SELECT json_group_array(json_array(name, size, sha256, content_type, "
                     "path)) FROM (SELECT * FROM artifacts WHERE job_id = jobs.id "
                     "ORDER BY name))")
GET = f"SELECT {_JOB_COLUMNS}, {_ARTIFACTS_OF_JOB} FROM jobs WHERE id = ? AND tenant = ?"
GET_ANY_TENANT = f"SELECT {_JOB_COLUMNS}, {_ARTIFACTS_OF_JOB} FROM jobs WHERE id = ?"
# A queued job the claim may take now. pool/policy.py decides `:skip` (queues at their cap,
# or whose share of the slots is reserved for others) and `:only` (when every free slot is
# reserved: the queues that may still fill their reservation). Then: not in a paused queue,
# not of a task at its rate limit, and for a concurrency key, the first queued job of its
# key while fewer than its limit run (so a batch takes at most one per key). A job that may
# not start is passed over, never waited on: the walk goes on down jobs_fair.
_CLAIMABLE = """q.status = 'queued'
    AND q.queue NOT IN (SELECT value FROM json_each(:skip))
    AND (:only IS NULL OR q.queue IN (SELECT value FROM json_each(:only)))
    AND q.queue NOT IN (SELECT name FROM queues WHERE paused)
    AND q.task NOT IN (SELECT t.name FROM tasks t WHERE t.rate_limit IS NOT NULL
        AND (SELECT count(*) FROM rate_starts r WHERE r.task = t.name
             AND r.at > :now - t.rate_window) >= t.rate_limit)
    AND (q.concurrency_key IS NULL OR (
        q.seq = (SELECT k.seq FROM jobs k WHERE k.tenant = q.tenant
                 AND k.concurrency_key = q.concurrency_key AND k.status = 'queued'
                 ORDER BY k.priority DESC, k.seq LIMIT 1)
        AND (SELECT count(*) FROM jobs k WHERE k.tenant = q.tenant
             AND k.concurrency_key = q.concurrency_key AND k.status = 'running')
            < q.concurrency_limit))"""
# Fair slots (schema _V16). While one tenant alone has queued jobs (or none has), a claim
# is the plain walk of its range of jobs_fair, in one statement; _LONE (two probes of
# jobs_fair) makes its LIMIT 0 otherwise. Only when it took nothing does the store ask
# CONTESTED, and then claim a turn (FAIR_CLAIM): the turn's machinery costs ~20 us more per
# claim, a statement asking first ~5 us (measured on 2 cores).
# A turn: `active` skips through jobs_fair from one tenant with queued jobs to the next; each
# one's head is its first job that may start; among the heads at the top priority the turn
# goes to the lowest pass (stride scheduling: a tenant's pass, or the clock if it is behind
# it; ties: the oldest head). It takes that tenant's jobs at that priority that are due
# before the runner-up's pass (each job moves the pass on by 1/weight; :weights maps tenant
# to weight, 1 unnamed), at least one and at most :n. A job that may not start is passed
# over, a head like any other, so no tenant's held-back jobs hold back another's.
_FIRST_TENANT = "(SELECT min(tenant) FROM jobs INDEXED BY jobs_fair WHERE status = 'queued')"
_LONE = (f"{_FIRST_TENANT} "
         "IS (SELECT max(tenant) FROM jobs INDEXED BY jobs_fair WHERE status = 'queued')")
# The lone tenant's claim takes one of two exact paths, chosen inside the statement by
# _HELD: whether some queue is held back as a whole (paused, or in the gate: `:held` is the
# pool's `skip` or `only`).
# - None is: the walk of the tenant's range of jobs_fair, the queue in claim order (schema
#   _V19), which passes over each job that may not start.
# - Some is: each queue with queued jobs (all the lone tenant's: no tenant in the index, so
#   shorter keys), found by a skip-scan of jobs_queued (schema _V20, one probe a queue); a
#   held queue is passed over whole, and the first :n jobs that may start of each other
#   queue are merged in claim order. Its cost
#   grows with the queues, not with a held queue's backlog (the walk passed every held job
#   ahead of the first that may start: 23 ms a claim behind 100,000 paused jobs,
#   bench/held_ahead.py); it costs ~30 us more than a walk with nothing ahead.
# A rate-limited task's or a busy concurrency key's jobs are still passed over one by one.
# The choice and _LONE sit in each path's LIMIT, evaluated before its walk.
_HELD = "(:held OR EXISTS (SELECT 1 FROM queues WHERE paused))"
_WALK = (f"FROM jobs q INDEXED BY jobs_fair WHERE q.tenant = {_FIRST_TENANT} "
         f"AND {_CLAIMABLE} ORDER BY q.priority DESC, q.seq "
         f"LIMIT CASE WHEN NOT {_HELD} AND {_LONE} THEN :n ELSE 0 END")
_HEADS = f"""WITH RECURSIVE queued(queue) AS (
    SELECT min(queue) FROM jobs INDEXED BY jobs_queued WHERE status = 'queued'
    UNION ALL
    SELECT (SELECT min(j.queue) FROM jobs j INDEXED BY jobs_queued
            WHERE j.status = 'queued' AND j.queue > o.queue)
    FROM queued o WHERE o.queue IS NOT NULL)
SELECT {{columns}} FROM queued o, jobs c
WHERE o.queue IS NOT NULL AND o.queue NOT IN (SELECT value FROM json_each(:skip))
    AND (:only IS NULL OR o.queue IN (SELECT value FROM json_each(:only)))
    AND o.queue NOT IN (SELECT name FROM queues WHERE paused)
    AND c.seq IN (SELECT q.seq FROM jobs q INDEXED BY jobs_queued
                  WHERE q.queue = o.queue AND {_CLAIMABLE}
                  ORDER BY q.priority DESC, q.seq LIMIT :n)
ORDER BY c.priority DESC, c.seq LIMIT CASE WHEN {_HELD} AND {_LONE} THEN :n ELSE 0 END"""
WALK_ORDER, HEADS_ORDER = f"SELECT q.seq {_WALK}", _HEADS.format(columns="c.seq")
CLAIM_ORDER = f"SELECT * FROM ({WALK_ORDER}) UNION ALL SELECT * FROM ({HEADS_ORDER})"
PEEK = (f"SELECT * FROM (SELECT q.seq, q.task {_WALK}) "
        f"UNION ALL SELECT * FROM ({_HEADS.format(columns='c.seq, c.task')})")
CONTESTED = f"SELECT NOT {_LONE}"
FAIR_PEEK = f"""WITH RECURSIVE active(tenant) AS (
    SELECT min(tenant) FROM jobs INDEXED BY jobs_fair WHERE status = 'queued'
    UNION ALL
    SELECT (SELECT min(j.tenant) FROM jobs j INDEXED BY jobs_fair
            WHERE j.status = 'queued' AND j.tenant > a.tenant)
    FROM active a WHERE a.tenant IS NOT NULL),
heads AS MATERIALIZED (
    SELECT h.tenant, h.seq, h.priority,
           max(coalesce(f.pass, 0), (SELECT coalesce(max(start), 0) FROM fair_shares)) AS pass,
           coalesce(w.value, 1) AS weight
    FROM jobs h LEFT JOIN fair_shares f ON f.tenant = h.tenant
    LEFT JOIN json_each(:weights) w ON w.key = h.tenant
    WHERE h.seq IN (SELECT (SELECT q.seq FROM jobs q WHERE q.tenant = a.tenant AND {_CLAIMABLE}
                            ORDER BY q.priority DESC, q.seq LIMIT 1)
                    FROM active a WHERE a.tenant IS NOT NULL)),
top AS (SELECT * FROM heads WHERE priority = (SELECT max(priority) FROM heads)),
turn AS MATERIALIZED (
    SELECT t.tenant, t.priority, min(:n, coalesce(max(1, CAST(
        ((SELECT min(r.pass) FROM top r WHERE r.tenant <> t.tenant) - t.pass) * t.weight
        + 1 - 1e-9 AS INTEGER)), :n)) AS take
    FROM top t ORDER BY t.pass, t.seq LIMIT 1)
SELECT q.seq, q.task FROM jobs q INDEXED BY jobs_fair
WHERE q.tenant = (SELECT tenant FROM turn) AND q.priority = (SELECT priority FROM turn)
    AND {_CLAIMABLE} ORDER BY q.seq LIMIT coalesce((SELECT take FROM turn), 0)"""
FAIR_ORDER = f"SELECT seq FROM ({FAIR_PEEK})"
# A turn moves the pass of the tenant whose jobs it took on by their steps (count / weight),
# from the clock if the tenant was behind it. Its own statement after the claim's: a pool
# that dies between the two loses one step of one tenant's pass, nothing else.
ADVANCE = ("INSERT INTO fair_shares (tenant, pass, start) "
           "SELECT :tenant, v + :steps, v FROM (SELECT coalesce(max(start), 0) AS v "
           "FROM fair_shares) WHERE true ON CONFLICT (tenant) DO UPDATE SET "
           "start = max(pass, excluded.start), pass = max(pass, excluded.start) + :steps")
# When the next start leaves some limited task's window (a wake-up for the pool).
RATE_FREE_AT = ("SELECT min(r.at + t.rate_window) FROM rate_starts r JOIN tasks t "
                "ON t.name = r.task WHERE t.rate_limit IS NOT NULL "
                "AND r.at > :now - t.rate_window")
PAUSE = ("INSERT INTO queues (name, paused, paused_at) VALUES (?, 1, ?) "
         "ON CONFLICT (name) DO UPDATE SET paused = 1, paused_at = excluded.paused_at")
RESUME = "UPDATE queues SET paused = 0, paused_at = NULL WHERE name = ?"
PAUSED = "SELECT name FROM queues WHERE paused"
# /api/queues: live jobs per queue (the queued ones' oldest), finishes since a time (a range
# of jobs_expiry per final state), and each rate-limited task's starts in its window.
# Each in two forms: the whole server's (the operator's view), and one tenant's. A tenant's
# live jobs are found through jobs_tenant_status (tenant, status): without INDEXED BY the
# planner takes jobs_tenant_queue to skip the GROUP BY sort, and so walks every job the tenant
# ever had, finished ones included (tests/store/test_sqlite.py pins the plans).
_TENANT_LIVE = "INDEXED BY jobs_tenant_status WHERE tenant = :tenant AND"


def _queue_depths(where: str) -> str:
    # A scheduled job always has its run_at: so jobs_due finds them, where `status` alone
    # made the whole server's view scan every job ever kept (100 ms a call with 1M jobs, for
    # each /metrics scrape). The queued and running ones have partial indexes of their own.
    return " UNION ALL ".join(
        f"SELECT queue, status, count(*), min(created_at) FROM jobs {where} {due}"
        f"status = '{state}' GROUP BY queue"
        for state, due in (("queued", ""), ("running", ""),
                           ("scheduled", "run_at IS NOT NULL AND ")))


def _queue_finishes(where: str) -> str:
    return (f"SELECT queue, count(*) FROM jobs {where} status IN ('succeeded', 'dead', "
            "'cancelled') AND finished_at >= :since GROUP BY queue")


def _rates(where: str) -> str:
    # The starts in the window stay every tenant's: the limit is one for the whole server.
    return ("SELECT t.name, t.queue, t.rate_limit, t.rate_window, "
            "(SELECT count(*) FROM rate_starts r WHERE r.task = t.name "
            "AND r.at > :now - t.rate_window), "
            f"(SELECT count(*) FROM jobs j {where} j.status = 'queued' AND j.task = t.name) "
            "FROM tasks t WHERE t.rate_limit IS NOT NULL ORDER BY t.name")


QUEUE_DEPTHS, TENANT_QUEUE_DEPTHS = _queue_depths("WHERE"), _queue_depths(_TENANT_LIVE)
QUEUE_FINISHES = _queue_finishes("WHERE")
TENANT_QUEUE_FINISHES = _queue_finishes("WHERE tenant = :tenant AND")  # jobs_finished
RATES = _rates("WHERE")
TENANT_RATES = _rates("INDEXED BY jobs_tenant_status WHERE j.tenant = :tenant AND")
_CLAIM_SET = ("UPDATE jobs SET status = 'running', attempts = attempts + 1, "
              "token = abs(random()), owner = :owner, lease_until = :lease_until, "
              "started_at = :now, error = NULL, "
              "error_code = NULL, error_detail = NULL, progress = NULL, progress_message = NULL, "
              "run_at = NULL ")
_CLAIMED = ("RETURNING id, task, params, attempts, max_attempts, timeout, token, failures, "
            "memory_limit, backoff_base, backoff_max, queue, crashes, created_at, tenant, "
            "depends_on IS NOT NULL")
CLAIM = f"{_CLAIM_SET} WHERE seq IN ({CLAIM_ORDER}) {_CLAIMED}"
FAIR_CLAIM = f"{_CLAIM_SET} WHERE seq IN ({FAIR_ORDER}) {_CLAIMED}"
CLAIM_REFS = (f"{_CLAIM_SET} WHERE seq IN (SELECT value FROM json_each(:refs)) "
              f"AND status = 'queued' {_CLAIMED}")
# Only the attempts named (the pool's slots hold them), fenced by token: a job claimed for no
# slot must not be kept alive by its owner's other leases.
RENEW = """
UPDATE jobs SET lease_until = :until
FROM (SELECT value ->> '$[0]' AS id, value ->> '$[1]' AS token FROM json_each(:held)) AS r
WHERE jobs.id = r.id AND jobs.token = r.token AND jobs.owner = :owner
    AND jobs.status = 'running'
"""
# Due jobs, scheduled or retrying, go to the queue in one statement, an index range of
# jobs_due; NEXT_DUE is that index's first entry (run_at is set only while a job waits).
PROMOTE = ("UPDATE jobs SET status = 'queued', run_at = NULL "
           "WHERE run_at <= ? AND status IN ('scheduled', 'retrying')")
NEXT_DUE = "SELECT min(run_at) FROM jobs WHERE run_at IS NOT NULL"
# One entry of `history`, appended as each attempt ends (`o` is the attempt's outcome).
_HISTORY_ENTRY = ("json_insert(jobs.history, '$[#]', json_object("
                  "'attempt', jobs.attempts, 'started_at', jobs.started_at, 'ended_at', {now}, "
                  "'outcome', {outcome}, 'error_code', {code}, 'error', {error}, "
                  "'exit', {exit}, 'peak_rss', {rss}, 'cpu_time', {cpu}))")
# Batches of progress and events travel as one JSON array bound to one parameter and are
# applied by one statement (json_each), so writing N of them costs one round trip and one
# write transaction. Results are bound as a multi-row VALUES instead (`finish_sql`).
#
# A failure runs again at its retry_at until the job has failed max_attempts times or crashed
# max_crashes times; then it is dead. Matching on the token fences out any attempt that is no
# longer the job's current one. (Every SET expression reads the row as it was before.)
# Bound: ?1 now, ?2 max_crashes, then each outcome's _OUTCOME values.
_FAILURE = "o.ending IN ('failed', 'crashed')"
_EXHAUSTED = ("(jobs.failures + 1 >= jobs.max_attempts "
              "OR (o.ending = 'crashed' AND jobs.crashes + 1 >= ?2))")
_FINISH_SET = f"""
UPDATE jobs SET
    status = CASE WHEN NOT {_FAILURE} THEN o.ending WHEN {_EXHAUSTED} THEN 'dead'
                  ELSE 'retrying' END,
    failures = jobs.failures + ({_FAILURE}),
    crashes = jobs.crashes + (o.ending = 'crashed'),
    run_at = CASE WHEN {_FAILURE} AND NOT {_EXHAUSTED} THEN o.retry_at END,
    finished_at = CASE WHEN {_FAILURE} AND NOT {_EXHAUSTED} THEN NULL ELSE ?1 END,
    result = o.result, error = o.error, error_code = o.code, error_detail = o.detail,
    progress = CASE WHEN o.ending = 'succeeded' THEN 1.0 ELSE jobs.progress END,
    peak_rss = coalesce(o.rss, jobs.peak_rss), cpu_time = o.cpu,
    history = {_HISTORY_ENTRY.format(outcome="o.ending", code="o.code", error="o.error",
                                     exit="o.exit", rss="o.rss", cpu="o.cpu", now="?1")},
    owner = NULL, lease_until = NULL, token = NULL
"""
_FINISH_WHERE = """
WHERE jobs.id = o.id AND jobs.token = o.token AND jobs.status = 'running'
RETURNING jobs.id, jobs.status
"""
# A success's files, in the transaction that recorded it (only for the jobs FINISH left
# succeeded: the caller filters the batch); the attempt is the one that just ended.
ADD_ARTIFACTS = """
INSERT OR IGNORE INTO artifacts (job_id, name, attempt, size, sha256, content_type, path)
SELECT a.value ->> 'job_id', a.value ->> 'name', jobs.attempts, a.value ->> 'size',
       a.value ->> 'sha256', a.value ->> 'content_type', a.value ->> 'path'
FROM json_each(:batch) AS a JOIN jobs ON jobs.id = a.value ->> 'job_id'
"""
_IDS = "(SELECT value FROM json_each(:ids))"
ARTIFACTS_OF = ("SELECT job_id, name, size, sha256, content_type, path FROM artifacts "
                f"WHERE job_id IN {_IDS} ORDER BY job_id, name")
ARTIFACT_BYTES = "SELECT coalesce(sum(bytes), 0) FROM artifact_usage"  # one row, or none
KEPT_ATTEMPTS = (f"SELECT job_id, attempt FROM artifacts WHERE job_id IN {_IDS} UNION "
                 f"SELECT id, attempts FROM jobs WHERE id IN {_IDS} AND status = 'running'")
GRAVES = "SELECT job_id FROM artifact_graves LIMIT :limit"
BURY = f"DELETE FROM artifact_graves WHERE job_id IN {_IDS}"
# An outcome's values as finish_sql binds them, in this order (`_outcome_row`).
_OUTCOME = ("id", "token", "ending", "result", "code", "error", "detail", "retry_at", "exit",
            "rss", "cpu")
# At most this many outcomes go in one FINISH (11 bound values each, far under SQLite's
# limit of 32,766); a larger batch is several statements in one transaction.
FINISH_ROWS = 256


@functools.cache
def finish_sql(n: int) -> str:
    """FINISH of `n` outcomes bound as a multi-row VALUES, not a JSON array read with
    json_each, which SQLite 3.40 parses again for each of the 11 fields (measured: ~105
    against ~128 us of CPU for one outcome, ~276 against ~400 for eight)."""
    width = len(_OUTCOME)
    rows = ", ".join("(" + ", ".join(f"?{3 + i * width + k}" for k in range(width)) + ")"
                     for i in range(n))
    columns = ", ".join(f"column{k + 1} AS {name}" for k, name in enumerate(_OUTCOME))
    return f"{_FINISH_SET}FROM (SELECT {columns} FROM (VALUES {rows})) AS o{_FINISH_WHERE}"


PROGRESS = """
UPDATE jobs SET progress = p.fraction, progress_message = p.message
FROM (SELECT value ->> 'id' AS id, value ->> 'token' AS token,
             value -> 'data' ->> 'fraction' AS fraction, value -> 'data' ->> 'message' AS message
      FROM json_each(:batch) WHERE value ->> 'kind' = 'progress') AS p
WHERE jobs.id = p.id AND jobs.token = p.token AND jobs.status = 'running'
"""
ADD_EVENTS = """
INSERT INTO job_events (job_id, at, kind, data)
SELECT n.value ->> 'id', :now, n.value ->> 'kind', n.value -> 'data'
FROM json_each(:batch) AS n
JOIN jobs ON jobs.id = n.value ->> 'id' AND jobs.token = n.value ->> 'token'
         AND jobs.status = 'running'
ORDER BY n.key
"""
LIST_FILTERS = ("status", "task", "queue", "schedule")


def list_sql(filters: set[str], *, paged: bool, finished: bool = False) -> str:
    """A page of a tenant's jobs, newest first, with equality `filters` (of LIST_FILTERS, bound
    in that order after the tenant) and, when `paged`, the cursor (seq below it) last.
    `finished` says the status filter names a final state.

    Each page walks one index, of the filter likely to be the narrowest (unary + keeps the
    others out of SQLite's choice): a schedule's (its jobs are one task's), then a task's,
    then a queue's (a task's jobs nearly all share one queue), unless the status is a live
    one (scheduled, queued, running, retrying), whose jobs are few next to the history. The
    final states accumulate, so among them a schedule, task or queue is the narrower."""
    lead = next((name for name in ("schedule", "task", "queue") if name in filters), "status")
    if "status" in filters and not finished:
        lead = "status"
    where = ["tenant = ?", *(f"{'' if name == lead else '+'}{name} = ?"
                             for name in LIST_FILTERS if name in filters)]
    if paged:
        where.append("seq < ?")
    return (f"SELECT seq, {_JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
            f"ORDER BY seq DESC LIMIT ?")


def every_tenant_sql(filters: set[str], *, paged: bool, search: bool) -> tuple[str, str]:
    """A page of every tenant's jobs (an admin's view), newest first: the newest `:scan` jobs
    past the cursor, narrowed to those the `filters` (and, with `search`, the id, task or
    params patterns) match; and the seq just past that window, where the next page starts.
    No per-filter index leads without a tenant, so the window bounds what a page reads."""
    past = "WHERE seq < :cursor " if paged else ""
    match = [f"{name} = :{name}" for name in LIST_FILTERS if name in filters]
    if search:
        match.append("(id LIKE :pattern ESCAPE '\\' OR task LIKE :pattern ESCAPE '\\' "
                     "OR params LIKE :json_pattern ESCAPE '\\')")
    where = f"WHERE {' AND '.join(match)} " if match else ""
    return (f"SELECT * FROM (SELECT seq, {_JOB_COLUMNS} FROM jobs {past}ORDER BY seq DESC "
            f"LIMIT :scan) {where}ORDER BY seq DESC LIMIT :page",
            f"SELECT seq FROM jobs {past}ORDER BY seq DESC LIMIT 1 OFFSET :scan")


# A job waiting for its time (scheduled) or its next attempt (retrying) is cancelled like a
# queued one.
CANCEL_QUEUED = (f"UPDATE jobs SET status = 'cancelled', cancel_requested = 1, "
                 f"error = '{ErrorCode.CANCELLED}', error_code = '{ErrorCode.CANCELLED}', "
                 f"run_at = NULL, "
                 f"finished_at = ? WHERE id = ? AND tenant = ? "
                 f"AND status IN ('scheduled', 'waiting', 'queued', 'retrying') "
                 f"RETURNING {_JOB_COLUMNS}")
CANCEL_RUNNING = (f"UPDATE jobs SET cancel_requested = 1 "
                  f"WHERE id = ? AND tenant = ? AND status = 'running' RETURNING {_JOB_COLUMNS}")
# Many jobs at once, in one statement (so one transaction, even on the API's shared
# connection): waiting and queued ones are cancelled as CANCEL_QUEUED does, running ones are
# flagged as CANCEL_RUNNING does. Every SET expression reads the row as it was.
CANCEL_MATCHING = f"""
UPDATE jobs SET cancel_requested = 1,
    status = iif(status = 'running', status, 'cancelled'),
    error = iif(status = 'running', error, '{ErrorCode.CANCELLED}'),
    error_code = iif(status = 'running', error_code, '{ErrorCode.CANCELLED}'),
    run_at = iif(status = 'running', run_at, NULL),
    finished_at = iif(status = 'running', finished_at, :now)
WHERE tenant = :tenant
    AND status IN ('scheduled', 'waiting', 'queued', 'retrying', 'running'){{filters}}
RETURNING status
"""
# Dependencies (schema _V18). A dependent job goes in `waiting`, counting every parent;
# LINK_PARENTS reads its parents (to refuse an unknown one, or another tenant's), LINK_EDGES
# records an edge to each parent not final yet, and SETTLE counts the final ones at once,
# as jobs_release would have when they ended: done, or (dead or cancelled, and the job does
# not run anyway) cancelled with parent_failed. All in the insert's transaction, whose write
# lock keeps every parent's state still until the edges are in. Bound: [child, parent]
# pairs as JSON (:links).
LINK_PARENTS = ("SELECT id, tenant, depth FROM jobs WHERE id IN "
                "(SELECT value ->> 1 FROM json_each(:links))")
# Each new job's depth (store/deps.py), as {id: depth} (:depths).
LINK_DEPTHS = ("UPDATE jobs SET depth = d.value FROM json_each(:depths) AS d "
               "WHERE jobs.id = d.key")
LINK_EDGES = ("INSERT INTO job_deps (parent, child) SELECT l.value ->> 1, l.value ->> 0 "
              "FROM json_each(:links) AS l JOIN jobs p ON p.id = l.value ->> 1 "
              "WHERE p.status NOT IN ('succeeded', 'dead', 'cancelled') "
              "ON CONFLICT DO NOTHING")
_SETTLE_FAILS = "s.failed IS NOT NULL AND jobs.on_parent_failure = 'cancel'"
SETTLE = f"""
UPDATE jobs SET
    waiting_for = jobs.waiting_for - s.done,
    status = CASE WHEN {_SETTLE_FAILS} THEN 'cancelled'
                  WHEN jobs.waiting_for <= s.done THEN 'queued' ELSE 'waiting' END,
    error_code = CASE WHEN {_SETTLE_FAILS} THEN '{ErrorCode.PARENT_FAILED}' END,
    error = CASE WHEN {_SETTLE_FAILS} THEN '{ErrorCode.PARENT_FAILED}: its parent ' || s.failed
                 || ' ended ' || (SELECT status FROM jobs f WHERE f.id = s.failed) END,
    finished_at = CASE WHEN {_SETTLE_FAILS} THEN :now END
FROM (SELECT l.value ->> 0 AS child, count(*) AS done,
             min(iif(p.status = 'succeeded', NULL, p.id)) AS failed
      FROM json_each(:links) AS l JOIN jobs p ON p.id = l.value ->> 1
      WHERE p.status IN ('succeeded', 'dead', 'cancelled') GROUP BY 1) AS s
WHERE jobs.id = s.child AND jobs.status = 'waiting'
RETURNING {_JOB_COLUMNS}
"""
# ctx.parent_results of claimed jobs that have parents: {parent id: result} per job, as JSON,
# and the parents' ids (whose artifacts ctx.parent_artifacts gets). Each parent is a probe of
# its id (unary + keeps a tenant index out of the planner's choice).
PARENT_RESULTS = ("SELECT c.id, json_group_object(p.id, json(p.result)), "
                  "json_group_array(p.id) FROM jobs c, "
                  "json_each(c.depends_on) AS d JOIN jobs p ON p.id = d.value "
                  "AND +p.tenant = c.tenant WHERE c.id IN (SELECT value FROM json_each(:ids)) "
                  "GROUP BY c.id")
# A workflow's steps, in the order they were submitted (jobs_workflow).
WORKFLOW = (f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = ? AND workflow_id = ? "
            f"ORDER BY seq")
# The tenant's latest workflows (their first job's seq, from jobs_workflow alone), then each
# one's jobs by state (CROSS JOIN: the page of workflows outside, each one's jobs an index
# range inside); rows of (id, created_at, status, count), newest workflow first.
WORKFLOWS = """
WITH w AS (SELECT workflow_id, min(seq) AS first FROM jobs
           WHERE tenant = :tenant AND workflow_id IS NOT NULL
           GROUP BY workflow_id ORDER BY first DESC LIMIT :limit)
SELECT w.workflow_id, (SELECT created_at FROM jobs WHERE seq = w.first), j.status, count(*)
FROM w CROSS JOIN jobs j ON j.tenant = :tenant AND j.workflow_id = w.workflow_id
GROUP BY w.workflow_id, j.status ORDER BY w.first DESC
"""
# Fan-out (store/fanout.py): the parents that may still add children, each placed in a
# workflow (its own, as the root, if it had none); bound: [[id, token], ...] as JSON. A
# running attempt adds them under its token unless a cancel was asked; a continuation goes
# in with its parent's success (FINISH, same transaction), unless a cancel was asked.
_FANOUT_PARENTS = ("UPDATE jobs SET workflow_id = coalesce(jobs.workflow_id, jobs.id) "
                   "FROM json_each(:batch) AS b WHERE jobs.id = b.value ->> 0 {guard} "
                   "AND jobs.cancel_requested = 0 RETURNING jobs.id, jobs.workflow_id")
SPAWN_PARENTS = _FANOUT_PARENTS.format(
    guard="AND jobs.token = b.value ->> 1 AND jobs.status = 'running'")
CONTINUE_PARENTS = _FANOUT_PARENTS.format(guard="AND jobs.status = 'succeeded'")
EXISTING = "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))"
# Children over a max_queued go in cancelled; this says why. Bound: [[id, error], ...].
REFUSE = (f"UPDATE jobs SET error_code = '{ErrorCode.QUOTA_EXCEEDED}', "
          "error = r.value ->> 1, finished_at = :now FROM json_each(:refused) AS r "
          "WHERE jobs.id = r.value ->> 0")
CANCEL_REQUESTS = ("SELECT id, token FROM jobs WHERE owner = ? AND status = 'running' "
                   "AND cancel_requested = 1")
# An attempt cut short by a shutdown is not the job's doing: it runs again, uncharged.
_INTERRUPTED = _HISTORY_ENTRY.format(outcome="'interrupted'", code=":code", error=":cause",
                                     exit="NULL", rss="NULL", cpu="NULL", now=":now")
REQUEUE = f"""
UPDATE jobs SET status = 'queued', error = :cause, error_code = :code,
    history = {_INTERRUPTED}, owner = NULL, token = NULL, lease_until = NULL
FROM (SELECT value ->> '$[0]' AS id, value ->> '$[1]' AS token FROM json_each(:batch)) AS r
WHERE jobs.id = r.id AND jobs.token = r.token AND jobs.status = 'running'
RETURNING jobs.id
"""
# Moving to another store (`scholarsource migrate-to`, store/transfer.py): each job as one
# JSON object keyed by CARRIED_COLUMNS, in seq order. The server is stopped (its data dir is
# locked), so a job left `running` was interrupted: it travels queued, uncharged, with an
# `interrupted` history entry, as REQUEUE would have left it.
_MOVED = "jobs.status = 'running'"
_CARRIED = {"status": f"iif({_MOVED}, 'queued', status)",
            "error": f"iif({_MOVED}, :cause, error)",
            "error_code": f"iif({_MOVED}, :code, error_code)",
            "history": f"json(iif({_MOVED}, {_INTERRUPTED}, history))"}
_CARRIED.update({flag: f"json(iif({flag}, 'true', 'false'))"
                 for flag in ("cancel_requested", "bypass_cache", "unique_job", "triggered")})
_CARRIED["depends_on"] = "json(depends_on)"
EXPORT_JOBS = ("SELECT seq, json_object("
               + ", ".join(f"'{c}', {_CARRIED.get(c, c)}" for c in CARRIED_COLUMNS)
               + ") FROM jobs WHERE seq > :after AND (:everything OR status NOT IN "
               "('succeeded', 'dead', 'cancelled')) ORDER BY seq LIMIT :limit")
EXPORT_EVENTS = ("SELECT json_object('job_id', job_id, 'at', at, 'kind', kind, "
                 "'data', json(data)) FROM job_events "
                 "WHERE job_id IN (SELECT value FROM json_each(:ids)) ORDER BY seq")
# The edges still to release of the jobs carried (job_deps holds no others), and, on import,
# those of the jobs now here. A scan of job_deps by child: unresolved edges only, offline.
EXPORT_DEPS = ("SELECT parent, child FROM job_deps "
               "WHERE child IN (SELECT value FROM json_each(:ids))")
IMPORT_DEPS = ("INSERT INTO job_deps (parent, child) SELECT value ->> 0, value ->> 1 "
               "FROM json_each(:deps) WHERE value ->> 1 IN (SELECT id FROM jobs) "
               "ON CONFLICT DO NOTHING")
# The carried jobs' artifact rows, and on import those of the jobs imported with them.
EXPORT_ARTIFACTS = ("SELECT json_object('job_id', job_id, 'name', name, 'attempt', attempt, "
                    "'size', size, 'sha256', sha256, 'content_type', content_type, "
                    "'path', path) FROM artifacts WHERE job_id IN (SELECT value FROM "
                    "json_each(:ids))")
IMPORT_ARTIFACTS = ("INSERT INTO artifacts (job_id, name, attempt, size, sha256, content_type, "
                    "path) SELECT value ->> 'job_id', value ->> 'name', value ->> 'attempt', "
                    "value ->> 'size', value ->> 'sha256', value ->> 'content_type', "
                    "value ->> 'path' FROM json_each(:artifacts) "
                    "WHERE value ->> 'job_id' IN (SELECT value FROM json_each(:imported)) "
                    "ON CONFLICT DO NOTHING")
EXPORT_QUEUES = ("SELECT json_object('name', name, 'paused', json(iif(paused, 'true', "
                 "'false')), 'paused_at', paused_at) FROM queues ORDER BY name")
EXPORT_SCHEDULES = ("SELECT json_object('name', name, 'paused', json(iif(paused, 'true', "
                    "'false')), 'cursor', cursor) FROM schedules ORDER BY name")
# Importing: ON CONFLICT DO NOTHING skips a job whose id, idempotency key, fire or live
# unique twin is already here. A job's events follow it when it is here and has none yet:
# the ones imported with it (ids are random: the same id is the same job), never twice.
_IMPORTED = {"history": "value -> '$.history'",
             "depends_on": "nullif(value -> '$.depends_on', 'null')"}
IMPORT_JOBS = (f"INSERT INTO jobs ({', '.join(CARRIED_COLUMNS)}) SELECT "
               + ", ".join(_IMPORTED.get(c, f"value ->> '$.{c}'") for c in CARRIED_COLUMNS)
               + " FROM json_each(:jobs) WHERE true ON CONFLICT DO NOTHING RETURNING id")
IMPORT_EVENTS = ("INSERT INTO job_events (job_id, at, kind, data) SELECT "
                 "value ->> '$.job_id', value ->> '$.at', value ->> '$.kind', value -> '$.data' "
                 "FROM json_each(:events) WHERE value ->> '$.job_id' IN (SELECT id FROM jobs) "
                 "AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = value ->> "
                 "'$.job_id') RETURNING seq")
IMPORT_QUEUES = ("INSERT INTO queues (name, paused, paused_at) SELECT value ->> '$.name', "
                 "value ->> '$.paused', value ->> '$.paused_at' FROM json_each(:queues) "
                 "WHERE true ON CONFLICT (name) DO NOTHING RETURNING name")
IMPORT_SCHEDULES = ("INSERT INTO schedules (name, paused, cursor) SELECT value ->> '$.name', "
                    "value ->> '$.paused', value ->> '$.cursor' FROM json_each(:schedules) "
                    "WHERE true ON CONFLICT (name) DO NOTHING RETURNING name")
# A job still running when its pool died may have killed it (a poison job that takes the
# whole tree down): it runs again, but counts a crash, and past max_crashes it is dead. When
# the dead pool left word of the attempt it was handling (:culprit, :culprit_token), that
# attempt alone is charged, and the jobs that merely ran beside it are re-queued uncharged
# (store/rules.py: after_lost_pool). A pool's own job whose lease ran out was never started:
# the pool renews every attempt its slots hold, so its claim was lost (the store failed right
# after it committed) and nothing ran; it goes back uncharged.
_CHARGED = ("(owner IS NOT :owner AND "
            "(:culprit IS NULL OR (id = :culprit AND token = :culprit_token)))")
_RECOVER = f"""
UPDATE jobs SET
    status = CASE WHEN {_CHARGED} AND crashes + 1 >= :max_crashes THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN {_CHARGED} AND crashes + 1 >= :max_crashes THEN :now END,
    crashes = crashes + {_CHARGED},
    error = CASE WHEN {_CHARGED} THEN :cause ELSE :spared END, error_code = :code,
    history = {_HISTORY_ENTRY.format(
        outcome=f"CASE WHEN :culprit IS NULL THEN 'interrupted' WHEN {_CHARGED} THEN 'crashed' "
                f"ELSE 'interrupted' END",
        code=":code", error=f"CASE WHEN {_CHARGED} THEN :cause ELSE :spared END",
        exit="NULL", rss="NULL", cpu="NULL", now=":now")},
    owner = NULL, token = NULL, lease_until = NULL
WHERE status = 'running' AND {{which}} RETURNING id
"""
RECOVER_EXPIRED = _RECOVER.format(which="lease_until < :now")
# Pool start: the other owners of this box (store/owner.py), whose pool is dead.
RECOVER_BOX = _RECOVER.format(
    which="owner IS NOT :owner AND substr(owner, 1, length(:box)) = :box")
# OR IGNORE: a unique job whose twin is live stays as it is (jobs_unique_live), whether
# the twin was live before or re-queued first by the same statement.
_RETRY_SET = ("UPDATE OR IGNORE jobs SET status = 'queued', failures = 0, crashes = 0, "
              "run_at = NULL, finished_at = NULL, cancel_requested = 0, error = NULL, "
              "error_code = NULL ")
RETRY = (f"{_RETRY_SET} WHERE id = ? AND tenant = ? "
         f"AND status IN ('retrying', 'dead', 'cancelled') RETURNING {_JOB_COLUMNS}")
RETRY_DEAD = f"{_RETRY_SET} WHERE tenant = ? AND status = 'dead' RETURNING seq"
PURGE_DEAD = "DELETE FROM jobs WHERE tenant = ? AND status = 'dead' RETURNING seq"
EVENTS = ("SELECT e.seq, e.job_id, e.at, e.kind, e.data FROM job_events e "
          "JOIN jobs j ON j.id = e.job_id "
          "WHERE e.job_id = ? AND j.tenant = ? AND e.seq > ? ORDER BY e.seq LIMIT ?")
# Every watched job's status and first events after its seq, in one statement. An event is
# one of the first :limit when the limit-th event after the seq (if any) is not before it: an
# index walk of job_events_job per job, whatever its history. json_each's key counts from 0.
WATCH = """
WITH w (pos, job_id, tenant, after) AS (
    SELECT key + 1, value ->> 0, value ->> 1, value ->> 2 FROM json_each(:watches))
SELECT w.pos, j.status, e.seq, e.at, e.kind, e.data
FROM w LEFT JOIN jobs j ON j.id = w.job_id AND j.tenant = w.tenant
LEFT JOIN job_events e ON j.id IS NOT NULL AND e.job_id = w.job_id AND e.seq > w.after
    AND e.seq <= coalesce((SELECT x.seq FROM job_events x WHERE x.job_id = w.job_id
                           AND x.seq > w.after ORDER BY x.seq LIMIT 1 OFFSET :limit - 1),
                          e.seq)
ORDER BY w.pos, e.seq
"""
HEARTBEAT = ("INSERT INTO pools (owner, pid, slots, slot_count, busy, heartbeat_at, admission, "
             "slot_rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE SET "
             "pid = excluded.pid, slots = excluded.slots, slot_count = excluded.slot_count, "
             "busy = excluded.busy, heartbeat_at = excluded.heartbeat_at, "
             "admission = excluded.admission, slot_rows = excluded.slot_rows")
POOLS = ("SELECT owner, pid, slots, slot_count, busy, heartbeat_at, admission, slot_rows "
         "FROM pools ORDER BY heartbeat_at DESC")
# The rows of pools that are gone: this box's earlier owners (at pool start), and any pool
# silent for longer than a pool's row is kept.
FORGET_POOLS = ("DELETE FROM pools WHERE owner IS NOT :owner AND "
                "(substr(owner, 1, length(:box)) = :box OR heartbeat_at < :before)")
_TASK_COLUMNS = ("name, queue, timeout, max_attempts, memory, memory_limit, backoff_base, "
                 "backoff_max, params, cache_ttl, unique_job, rate_limit, rate_window, "
                 "concurrency_limit")
TASKS = f"SELECT {_TASK_COLUMNS} FROM tasks"
CLEAR_TASKS = "DELETE FROM tasks"
ADD_TASKS = (f"INSERT INTO tasks ({_TASK_COLUMNS}) "
             "SELECT value ->> '$[0]', value ->> '$[1]', value ->> '$[2]', value ->> '$[3]', "
             "value ->> '$[4]', value ->> '$[5]', value ->> '$[6]', value ->> '$[7]', "
             "value ->> '$[8]', value ->> '$[9]', value ->> '$[10]', value ->> '$[11]', "
             "value ->> '$[12]', value ->> '$[13]' FROM json_each(?)")
CHECK_WRITABLE = "DELETE FROM pools WHERE 0"
USER_VERSION = "PRAGMA user_version"
QUICK_CHECK = "PRAGMA quick_check(5)"
AUTO_VACUUM = "PRAGMA auto_vacuum"
_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}
COUNTS = "SELECT status, count(*) FROM jobs GROUP BY status"
TENANT_COUNTS = "SELECT status, count(*) FROM jobs WHERE tenant = ? GROUP BY status"
# Operator figures. Per queue, one arm per state, for one tenant or ({tenant} left empty)
# all of them, so that each arm walks that state's own partial index: the live states and
# the dead letters are few whatever the history (the waiting states share jobs_due, whose
# rows are those with a run_at). A tenant's finished jobs are a range of
# jobs_finished (tenant, finished_at): counting them reads the index alone.
QUEUE_COUNTS = " UNION ALL ".join(
    f"SELECT queue, status, count(*) FROM jobs WHERE {{tenant}} "
    f"{'run_at IS NOT NULL AND ' if state in WAITING_STATES else ''}status = '{state}' "
    f"GROUP BY queue" for state in QUEUE_COUNT_STATES)
FINISHED_HISTORY = ("SELECT CAST((finished_at - :since) / :step AS INTEGER), count(*) "
                    "FROM jobs WHERE tenant = :tenant AND finished_at >= :since GROUP BY 1")
RECENTLY_FINISHED = ("SELECT task, status, created_at, started_at, finished_at FROM jobs "
                     "WHERE tenant = :tenant AND finished_at >= :since "
                     "ORDER BY finished_at DESC LIMIT :limit")

# Retention. Each final state's expired jobs are one range of V9's jobs_expiry, oldest first.
# Deleting a job deletes its events (trigger jobs_purge_events) and, with the row, its
# idempotency key. One statement is one short write transaction: the caller bounds `limit`.
_EXPIRED = ("SELECT seq FROM jobs WHERE status = :state AND finished_at < :before "
            "ORDER BY finished_at LIMIT :limit")
PRUNE = f"DELETE FROM jobs WHERE seq IN ({_EXPIRED}) RETURNING seq"
COUNT_EXPIRED = "SELECT count(*) FROM jobs WHERE status = :state AND finished_at < :before"
FREE_PAGES = ("SELECT f.freelist_count, p.page_count FROM pragma_freelist_count() AS f, "
              "pragma_page_count() AS p")
# incremental_vacuum frees one page per result row, and a row without columns makes the
# sqlite3 module stop stepping after the first: run it as a script, which steps to the end.
# A no-op unless the file has auto_vacuum = INCREMENTAL (see schema.migrate).
RELEASE_PAGES = "PRAGMA incremental_vacuum({pages})"
# PASSIVE: copy what it can without waiting for anyone. In WAL mode the file only shrinks
# when a checkpoint writes the commit that released its tail.
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
VACUUM = "PRAGMA auto_vacuum = INCREMENTAL; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);"
# Free pages up to a quarter of the used ones stay: new jobs reuse them, so a steady flow
# does not shrink and regrow the file at every prune.
_SLACK = 4


# The jobs list's text search: a LIKE over at most `scan` rows (the window: the newest jobs
# the other filters match), never over the whole history.
SEARCH = ("SELECT * FROM ({window}) WHERE id LIKE ? ESCAPE '\\' OR task LIKE ? ESCAPE '\\' "
          "OR params LIKE ? ESCAPE '\\' ORDER BY seq DESC LIMIT ?")
BEYOND = "SELECT seq FROM ({window}) LIMIT 1 OFFSET ?"


# Quotas (store/admission.py). What a quota transaction reads, in one statement: the
# overrides of its tenants, every tenant's count of non-final jobs (a row per tenant, kept
# by the jobs_live_* triggers), and its buckets.
QUOTA_STATE = """
SELECT 0, tenant, rate_limit, rate_window, max_queued, weight FROM tenant_limits
    WHERE tenant IN (SELECT value FROM json_each(:tenants))
UNION ALL SELECT 1, tenant, live, NULL, NULL, NULL FROM tenant_live
UNION ALL SELECT 2, name, tokens, at, NULL, NULL FROM quota_buckets
    WHERE name IN (SELECT value FROM json_each(:buckets))
"""
SAVE_LEVELS = ("INSERT INTO quota_buckets (name, tokens, at) SELECT value ->> 0, "
               "value ->> 1, value ->> 2 FROM json_each(?) WHERE true ON CONFLICT (name) "
               "DO UPDATE SET tokens = excluded.tokens, at = excluded.at")
TENANT_OVERRIDES = ("SELECT tenant, rate_limit, rate_window, max_queued, weight "
                    "FROM tenant_limits ORDER BY tenant")
SET_TENANT_LIMITS = """
INSERT INTO tenant_limits (tenant, rate_limit, rate_window, max_queued, weight)
VALUES (:tenant, :rate_limit, :rate_window, :max_queued, :weight)
ON CONFLICT (tenant) DO UPDATE SET
    rate_limit = coalesce(excluded.rate_limit, rate_limit),
    rate_window = coalesce(excluded.rate_window, rate_window),
    max_queued = coalesce(excluded.max_queued, max_queued),
    weight = coalesce(excluded.weight, weight)
"""
CLEAR_TENANT_LIMITS = "DELETE FROM tenant_limits WHERE tenant = ? RETURNING tenant"
LIVE_COUNTS = "SELECT tenant, live FROM tenant_live WHERE live > 0 ORDER BY tenant"

# API keys and dashboard sessions. A key is found by its id alone (the primary key), so a
# wrong key costs the query a right one does; the caller compares digests.
_KEY_COLUMNS = "id, tenant, role, name, rate, created_at, revoked_at, digest"
CREATE_KEY = (f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
LIST_KEYS = f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
FIND_KEY = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?"
REVOKE_KEY = ("UPDATE api_keys SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id "
              f"RETURNING {_KEY_COLUMNS}")
END_KEY_SESSIONS = "DELETE FROM sessions WHERE key_id = :id"
EXPIRE_SESSIONS = "DELETE FROM sessions WHERE expires_at <= ?"
CREATE_SESSION = "INSERT INTO sessions (digest, key_id, expires_at) VALUES (?, ?, ?)"
FIND_SESSION = (f"SELECT {', '.join('k.' + c for c in _KEY_COLUMNS.split(', '))} "
                "FROM sessions AS s JOIN api_keys AS k ON k.id = s.key_id "
                "WHERE s.digest = ? AND s.expires_at > ? AND k.revoked_at IS NULL")
END_SESSION = "DELETE FROM sessions WHERE digest = ?"


def _for(sql: str, tenant: str | None) -> str:
    return sql.format(tenant="" if tenant is None else "+tenant = :tenant AND")


def _unavailable(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Map "locked past the busy timeout", "disk full" and friends to StoreUnavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    return wrapper


class _Driver(Protocol):
    """How statements reach the database: one call per statement, rows fully fetched, so
    a statement that writes has committed and released the write lock when the call returns
    (a half-read RETURNING cursor would hold the lock across awaits). `fetchall` waits for
    SQLite's write lock (store/busy.py); `attempt` may instead return the refusal, for a
    caller that waits without holding the connection (_Serialized)."""

    busy_timeout: float

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]: ...

    async def attempt(self, sql: str, params: Any) -> list[Any] | sqlite3.OperationalError:
        ...

    async def script(self, sql: str) -> None: ...

    async def close(self) -> None: ...


class _ThreadDriver:
    """aiosqlite: statements run on the connection's own thread, never blocking the event
    loop. For API workers, whose loop serves many requests at once."""

    def __init__(self, conn: aiosqlite.Connection, busy_timeout: float) -> None:
        self._conn = conn
        self.busy_timeout = busy_timeout

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        outcome = await self.attempt(sql, params)
        if not isinstance(outcome, sqlite3.OperationalError):
            return outcome
        return await busy.fetch_awaiting(lambda: self.attempt(sql, params), self.busy_timeout)

    async def attempt(self, sql: str, params: Any) -> list[Any] | sqlite3.OperationalError:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.OperationalError as exc:
            if busy.locked(exc, self._conn.in_transaction):
                return exc
            raise

    async def script(self, sql: str) -> None:
        # As _InlineDriver.script: SQLite's own handler waits for a script.
        await self.fetchall(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        try:
            await self._conn.executescript(sql)
        finally:
            await self.fetchall("PRAGMA busy_timeout = 0")

    async def close(self) -> None:
        await self._conn.close()


class _InlineDriver:
    """Statements run on the calling thread. For the pool's dispatcher, whose loop has
    nothing else to do meanwhile: it saves two thread hand-offs per statement (measured
    with bench/claims.py: claim + finish ~2k/s through aiosqlite, ~10k/s inline). It waits
    for the write lock in short steps (store/busy.py): the connection's own busy timeout is
    0, and `busy_timeout` is how long a statement waits in all."""

    def __init__(self, conn: sqlite3.Connection, busy_timeout: float) -> None:
        self._conn = conn
        self.busy_timeout = busy_timeout

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not busy.locked(exc, self._conn.in_transaction):
                raise
            return busy.fetch_waiting(self._conn, sql, params, self.busy_timeout)

    async def attempt(self, sql: str, params: Any) -> list[Any] | sqlite3.OperationalError:
        return await self.fetchall(sql, params)  # waits here: the loop has nothing else to do

    async def script(self, sql: str) -> None:
        # Scripts are rare (compaction, VACUUM) and may wait inside a statement (a TRUNCATE
        # checkpoint waits for readers): SQLite's own handler waits for them.
        self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}").fetchall()
        try:
            self._conn.executescript(sql)
        finally:
            self._conn.execute("PRAGMA busy_timeout = 0").fetchall()

    async def close(self) -> None:
        self._conn.close()


class _Serialized:
    """The store's connection as its callers share it: a statement waits while a
    transaction (`SqliteStore._transaction`) holds the connection, so that no other
    request's statement lands inside it (an uncontended lock costs about a microsecond).
    The task that holds the transaction runs its own statements in it (a batch's)."""

    def __init__(self, driver: _Driver) -> None:
        self.raw = driver
        self.lock = asyncio.Lock()
        self.holder: asyncio.Task[Any] | None = None  # whose transaction holds the lock

    def held(self) -> bool:
        """True in the task whose transaction holds the connection."""
        return self.holder is not None and self.holder is asyncio.current_task()

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        if self.held():
            return await self.raw.fetchall(sql, params)
        async with self.lock:  # the refusal is judged under it (busy.locked)
            outcome = await self.raw.attempt(sql, params)
        if not isinstance(outcome, sqlite3.OperationalError):
            return outcome
        # Refused for SQLite's write lock: wait without holding the connection, so that
        # other requests' reads (never refused in WAL) go on meanwhile.
        return await busy.fetch_awaiting(lambda: self._attempt(sql, params),
                                         self.raw.busy_timeout)

    async def _attempt(self, sql: str, params: Any) -> list[Any] | sqlite3.OperationalError:
        async with self.lock:
            return await self.raw.attempt(sql, params)

    async def begin(self) -> None:
        """Take the connection and begin a write transaction on it (`lock.release()` gives
        it back). While SQLite refuses its write lock, wait without holding the connection,
        as `fetchall` does: a keyed submit's transaction holds up no other request's read."""
        if isinstance(await self._begin_once(), sqlite3.OperationalError):
            await busy.fetch_awaiting(self._begin_once, self.raw.busy_timeout)

    async def _begin_once(self) -> list[Any] | sqlite3.OperationalError:
        await self.lock.acquire()
        try:
            outcome = await self.raw.attempt("BEGIN IMMEDIATE", ())
        except BaseException:
            self.lock.release()
            raise
        if isinstance(outcome, sqlite3.OperationalError):
            self.lock.release()  # refused: the connection is free while it waits
        return outcome

    async def script(self, sql: str) -> None:
        async with self.lock:
            await self.raw.script(sql)

    async def close(self) -> None:
        await self.raw.close()


class _SqliteQuotaTx:
    """A quota transaction on SQLite (see store/admission.py): BEGIN IMMEDIATE holds the
    write lock throughout, so every check is exact across processes."""

    def __init__(self, db: _Driver) -> None:
        self._db = db

    async def state(self, tenants: list[str], buckets: list[str]) -> QuotaState:
        return quota_state_from_rows(await self._db.fetchall(QUOTA_STATE, {
            "tenants": json.dumps(tenants), "buckets": json.dumps(buckets)}))

    async def insert(self, news: list[NewJob], jobs: list[Job]) -> None:
        rows = [_row(new, job) for new, job in zip(news, jobs, strict=True)]
        for start in range(0, len(rows), SUBMIT_ROWS):
            size, values = padded(rows[start:start + SUBMIT_ROWS])
            await self._db.fetchall(insert_sql(size, False), values)

    async def insert_once(self, new: NewJob, job: Job) -> bool:
        args = _row(new, job)
        if new.cache_ttl is None or new.bypass_cache:
            return bool(await self._db.fetchall(SUBMIT_ONCE, args))
        since = job.created_at - new.cache_ttl
        return bool(await self._db.fetchall(SUBMIT_UNCACHED,
                                            (*args, new.tenant, new.fingerprint, since)))

    async def insert_new(self, news: list[NewJob], jobs: list[Job]) -> set[str]:
        rows = [_row(new, job) for new, job in zip(news, jobs, strict=True)]
        inserted: set[str] = set()
        for start in range(0, len(rows), SUBMIT_ROWS):
            size, values = padded(rows[start:start + SUBMIT_ROWS])
            inserted.update(job_id for (job_id,) in await self._db.fetchall(
                insert_sql(size, True), values))
        return inserted

    async def existing(self, new: NewJob, job: Job) -> tuple[Job, Reused] | None:
        cached = new.cache_ttl is not None and not new.bypass_cache
        since = job.created_at - (new.cache_ttl or 0.0)
        lookups = [(new.idempotency_key is not None, Reused.IDEMPOTENT, BY_KEY,
                    (new.tenant, new.idempotency_key)),
                   (cached, Reused.CACHED, CACHED, (new.tenant, new.fingerprint, since)),
                   (new.unique, Reused.UNIQUE, LIVE_TWIN, (new.tenant, new.fingerprint))]
        for wanted, why, sql, args in lookups:
            rows = await self._db.fetchall(sql, args) if wanted else []
            if rows:
                return _job(rows[0]), why
        return None

    async def save(self, levels: dict[str, Level]) -> None:
        await self._db.fetchall(SAVE_LEVELS, (json.dumps(
            [(name, level.tokens, level.at) for name, level in levels.items()]),))

    async def link(self, jobs: list[Job]) -> dict[str, Job]:
        return await _link(self._db, jobs)


async def _link(db: _Driver, jobs: list[Job]) -> dict[str, Job]:
    """Link just-inserted dependent jobs to their parents, inside the insert's transaction;
    returns the jobs that parents already final changed (see SETTLE)."""
    pairs = links_json(jobs)
    found = depths(jobs, await db.fetchall(LINK_PARENTS, {"links": pairs}))
    await db.fetchall(LINK_EDGES, {"links": pairs})
    await db.fetchall(LINK_DEPTHS, {"depths": json.dumps(found)})
    rows = await db.fetchall(SETTLE, {"links": pairs, "now": time.time()})
    return {job.id: job for job in map(_job, rows)}


async def _add_children(db: _Driver, parents_sql: str, parents: list[list[Any]],
                        spawns: list[Spawn], policy: QuotaPolicy | None = None) -> None:
    """Insert the `spawns` whose parent `parents_sql` keeps (see SPAWN_PARENTS), inside the
    caller's transaction, within the max_queued of `policy` (None: no check); an id already
    there stays as it is, and only the new rows are linked to the siblings they depend
    on."""
    if not spawns:
        return
    workflows = dict(await db.fetchall(parents_sql, {"batch": json.dumps(parents)}))
    existing = {job_id for (job_id,) in await db.fetchall(
        EXISTING, {"ids": json.dumps(named(spawns))})}
    news = placed(spawns, workflows, existing)
    refused: dict[str, str] = {}
    if news and policy is not None:
        state = await _SqliteQuotaTx(db).state(sorted({new.tenant for new in news}), [])
        refused = over_quota(news, state, policy)
    jobs = [dataclasses.replace(job, status=JobState.CANCELLED) if job.id in refused else job
            for job in _new_jobs(news)]
    inserted: set[str] = set()
    for start in range(0, len(jobs), SUBMIT_ROWS):
        size, values = padded([_row(new, job) for new, job in zip(
            news[start:start + SUBMIT_ROWS], jobs[start:start + SUBMIT_ROWS], strict=True)])
        inserted.update(job_id for (job_id,) in await db.fetchall(insert_sql(size, True),
                                                                    values))
    if refused:
        await db.fetchall(REFUSE, {"refused": json.dumps(list(refused.items())),
                                   "now": time.time()})
    linked = [job for job in jobs if job.id in inserted and job.depends_on
              and job.id not in refused]
    if linked:
        await _link(db, linked)


def _row(new: NewJob, j: Job) -> tuple[Any, ...]:
    """A job's values for _INSERT, in its column order."""
    return (j.id, j.tenant, j.task, j.queue, j.priority, json.dumps(j.params),
            j.max_attempts, j.timeout, j.created_at, j.memory_limit, j.backoff_base,
            j.backoff_max, j.idempotency_key, new.fingerprint, j.cache_ttl, j.bypass_cache,
            j.unique, j.status.value, j.run_at, j.schedule, j.scheduled_for, new.triggered,
            j.concurrency_key, j.concurrency_limit,
            json.dumps(j.depends_on) if j.depends_on else None, j.on_parent_failure,
            len(j.depends_on), j.workflow_id, j.step, j.parent_id)


def _outcome_row(o: Outcome) -> tuple[Any, ...]:
    """An outcome's values for finish_sql, in _OUTCOME's order."""
    return (o.job_id, o.token, o.ending.value, o.result_json, o.error_code, o.error,
            o.error_detail, o.retry_at, o.exit, o.peak_rss, o.cpu_time)


@functools.lru_cache(maxsize=64)  # a pool's gates are few; three json.dumps each claim
def _gate(gate: Gate) -> Mapping[str, str | bool | None]:
    return MappingProxyType({"skip": json.dumps(list(gate.skip)),
                             "only": None if gate.only is None else json.dumps(list(gate.only)),
                             "held": bool(gate.skip) or gate.only is not None,
                             "weights": json.dumps(dict(gate.weights))})


class SqliteStore(Store):
    """The embedded store: one SQLite file in WAL mode. Open it with `SqliteStore.open`."""

    def __init__(self, driver: _Driver, path: Path) -> None:
        self._db = _Serialized(driver)
        self.path = path
        self._waker: Waker | None = None  # made on the first wake

    @classmethod
    async def open(cls, path: Path, *, durability: str = "normal", busy_timeout: float = 5.0,
                   inline: bool = False, read_only: bool = False) -> SqliteStore:
        """Connect to an already-migrated database file (see `schema.migrate`); `inline` runs
        statements on the caller's thread instead of aiosqlite's; `read_only` (inline only:
        doctor) can never create or write the file. Either driver waits for the write lock
        itself, up to `busy_timeout` seconds (store/busy.py): SQLite's own timeout is 0."""
        driver: _Driver
        if inline:
            target = f"{path.absolute().as_uri()}?mode=ro" if read_only else str(path)
            driver = _InlineDriver(sqlite3.connect(target, isolation_level=None, timeout=0,
                                                   uri=read_only), busy_timeout)
        else:
            driver = _ThreadDriver(await aiosqlite.connect(path, isolation_level=None,
                                                           timeout=0), busy_timeout)
        await driver.fetchall(f"PRAGMA synchronous = "
                              f"{'FULL' if durability == 'full' else 'NORMAL'}")
        await driver.fetchall("PRAGMA temp_store = MEMORY")
        # A parent's end releases its children in a trigger whose updates fire it again for
        # theirs (a failure cascades down a workflow: schema _V18).
        await driver.fetchall("PRAGMA recursive_triggers = ON")
        return cls(driver, path)

    async def close(self) -> None:
        if self._waker is not None:
            self._waker.close()
        await self._db.close()

    def wake(self, kind: Wake) -> None:
        if self._waker is None:
            self._waker = Waker(str(self.path.parent))
        self._waker.poke(kind)

    async def listen(self) -> WakeSource:
        return await Listener.bind(str(self.path.parent))

    async def _atomically(self, statements: list[tuple[str, Any]]) -> list[list[Any]]:
        """Several statements as one write transaction; returns each statement's rows."""

        async def run(db: _Driver) -> list[list[Any]]:
            return [await db.fetchall(sql, params) for sql, params in statements]

        return await self._in_transaction(run)

    async def _in_transaction(self, work: Callable[[_Driver], Awaitable[R]]) -> R:
        """`work` as one write transaction. Shielded: a caller cancelled midway must not
        leave the transaction, and SQLite's write lock, open on this connection."""

        async def run() -> R:
            async with self._transaction() as db:
                return await work(db)

        if self._db.held():  # inside a batch, which is the transaction (and its task's)
            return await run()
        return await asyncio.shield(run())

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Driver]:
        """A write transaction that holds the connection: other statements wait for it.
        Inside one already held by this task (a batch), it is part of that one."""
        db = self._db.raw
        if self._db.held():
            yield db
            return
        await self._db.begin()  # holds the connection from here on, its transaction open
        self._db.holder = asyncio.current_task()
        try:
            try:
                yield db
            except BaseException:
                await db.fetchall("ROLLBACK")
                raise
            try:
                await db.fetchall("COMMIT")
            except sqlite3.Error:
                # An I/O error may have ended the transaction already, or may not.
                with contextlib.suppress(sqlite3.Error):
                    await db.fetchall("ROLLBACK")
                raise
        finally:
            self._db.holder = None
            self._db.lock.release()

    atomic_batch = True

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        try:
            async with self._transaction():
                yield
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    @asynccontextmanager
    async def _quota_tx(self) -> AsyncIterator[QuotaTx]:
        async with self._transaction() as db:
            yield _SqliteQuotaTx(db)

    async def _one(self, sql: str, params: Any = ()) -> Any:
        rows = await self._db.fetchall(sql, params)
        return rows[0] if rows else None

    # -- the API's side ---------------------------------------------------------------------
    @_unavailable
    async def submit_many(self, news: list[NewJob]) -> list[Job]:
        jobs = _new_jobs(news)
        rows = [_row(new, job) for new, job in zip(news, jobs, strict=True)]
        statements = [(submit_sql(len(chunk)), [value for row in chunk for value in row])
                      for start in range(0, len(rows), SUBMIT_ROWS)
                      for chunk in (rows[start:start + SUBMIT_ROWS],)]
        if any(job.depends_on for job in jobs):
            return await self._in_transaction(
                lambda db: self._submit_linked(db, statements, jobs))
        if len(statements) == 1:
            await self._db.fetchall(*statements[0])
        else:  # bulk loads (bench, tests), never from the API's shared connection
            await self._atomically(statements)
        return jobs

    @staticmethod
    async def _submit_linked(db: _Driver, statements: list[tuple[str, Any]],
                             jobs: list[Job]) -> list[Job]:
        for sql, params in statements:
            await db.fetchall(sql, params)
        changed = await _link(db, [job for job in jobs if job.depends_on])
        return [changed.get(job.id, job) for job in jobs]

    @_unavailable
    async def submit_once(self, new: NewJob) -> tuple[Job, Reused | None]:
        fingerprint = new.fingerprint
        cached = new.cache_ttl is not None and not new.bypass_cache
        # A few rounds, not one transaction (the API's connection is shared by its
        # requests): the job that stopped the insert may have left its state (or been
        # purged) before the lookup, and then the insert may go through.
        for _ in range(3):
            (job,) = _new_jobs([new])
            since = job.created_at - (new.cache_ttl or 0.0)
            args = _row(new, job)
            if not cached:
                rows = await self._db.fetchall(SUBMIT_ONCE, args)
            else:
                rows = await self._db.fetchall(SUBMIT_UNCACHED,
                                               (*args, new.tenant, fingerprint, since))
            if rows:
                return job, None
            lookups = [(new.idempotency_key is not None, Reused.IDEMPOTENT, BY_KEY,
                        (new.tenant, new.idempotency_key)),
                       (cached, Reused.CACHED, CACHED, (new.tenant, fingerprint, since)),
                       (new.unique, Reused.UNIQUE, LIVE_TWIN, (new.tenant, fingerprint))]
            for wanted, why, sql, lookup_args in lookups:
                row = await self._one(sql, lookup_args) if wanted else None
                if row is not None:
                    return _job(row), why
        raise StoreUnavailable("the job this submit matched kept changing; send it again")

    @_unavailable
    async def admit(self, groups: list[tuple[Ask, list[NewJob]]],
                    policy: QuotaPolicy) -> list[Admission]:
        return await admit(self._quota_tx(), groups, policy, self._insert_guarded,
                           GUARDED_SIZES[-1])

    async def _insert_guarded(self, news: list[NewJob], jobs: list[Job], guard: Guard) -> bool:
        size, values = padded([_row(new, job) for new, job in zip(news, jobs, strict=True)])
        cap = _NO_CAP if guard.max_queued is None else guard.max_queued
        # One statement: every row went in, or (the guard failed) none did.
        return bool(await self._db.fetchall(submit_guarded_sql(size), [
            *values, json.dumps(guard.tenants), guard.total, cap, json.dumps(guard.caps)]))

    @_unavailable
    async def tenant_overrides(self) -> dict[str, TenantOverride]:
        return {tenant: override_from_row(*rest)
                for tenant, *rest in await self._db.fetchall(TENANT_OVERRIDES)}

    @_unavailable
    async def set_tenant_limits(self, tenant: str, override: TenantOverride) -> None:
        rate = override.rate
        await self._db.fetchall(SET_TENANT_LIMITS, {
            "tenant": tenant, "rate_limit": None if rate is None else rate.limit,
            "rate_window": None if rate is None else rate.window,
            "max_queued": override.max_queued, "weight": override.weight})

    @_unavailable
    async def clear_tenant_limits(self, tenant: str) -> bool:
        return bool(await self._db.fetchall(CLEAR_TENANT_LIMITS, (tenant,)))

    @_unavailable
    async def live_counts(self) -> dict[str, int]:
        return {tenant: live for tenant, live in await self._db.fetchall(LIVE_COUNTS)}

    @_unavailable
    async def get(self, tenant: str | None, job_id: str) -> Job | None:
        row = await (self._one(GET_ANY_TENANT, (job_id,)) if tenant is None
                     else self._one(GET, (job_id, tenant)))
        return None if row is None else job_with_artifacts(row)

    @_unavailable
    async def list_jobs(self, tenant: str | None, *, status: str | None = None,
                        task: str | None = None, queue: str | None = None, limit: int = 50,
                        cursor: int | None = None, search: str | None = None,
                        search_scan: int = 10_000,
                        schedule: str | None = None) -> tuple[list[Job], int | None]:
        given = {name: value for name, value in zip(LIST_FILTERS,
                                                      (status, task, queue, schedule),
                                                      strict=True) if value is not None}
        if tenant is None:
            return await self._every_tenant(given, cursor, limit, search, search_scan)
        args: list[str | int] = [tenant, *given.values()]
        if cursor is not None:
            args.append(cursor)
        sql = list_sql(set(given), paged=cursor is not None,
                       finished=status is not None and JobState(status).final)
        if search is not None:
            return await self._search(sql, args, limit, search, search_scan)
        rows = await self._db.fetchall(sql, (*args, limit + 1))
        next_cursor = rows[limit - 1][0] if len(rows) > limit else None
        return [_job(row[1:]) for row in rows[:limit]], next_cursor

    async def _every_tenant(self, given: dict[str, str], cursor: int | None, limit: int,
                            search: str | None, scan: int) -> tuple[list[Job], int | None]:
        page, beyond = every_tenant_sql(set(given), paged=cursor is not None,
                                        search=search is not None)
        args: dict[str, Any] = {**given, "cursor": cursor, "scan": scan, "page": limit + 1}
        if search is not None:
            args.update(pattern=_like(search), json_pattern=_like(json.dumps(search)[1:-1]))
        rows = await self._db.fetchall(page, args)
        if len(rows) > limit:
            return [_job(row[1:]) for row in rows[:limit]], rows[limit - 1][0]
        past = await self._one(beyond, args)
        return [_job(row[1:]) for row in rows], None if past is None else past[0] + 1

    async def _search(self, window: str, args: list[str | int], limit: int, text: str,
                      scan: int) -> tuple[list[Job], int | None]:
        """`window` (the newest `scan` jobs the filters match) narrowed to those whose id,
        task or params contain `text`. Params are JSON text, so `text` is looked for as JSON
        encodes it (quotes and non-ASCII escaped)."""
        rows = await self._db.fetchall(SEARCH.format(window=window),
                                       (*args, scan, _like(text), _like(text),
                                        _like(json.dumps(text)[1:-1]), limit + 1))
        if len(rows) > limit:
            return [_job(row[1:]) for row in rows[:limit]], rows[limit - 1][0]
        # Fewer matches than a page: the next page starts past the window, if any job is left
        # there (the one after the window; seq < its seq + 1 takes it in).
        seqs = window.replace(f"SELECT seq, {_JOB_COLUMNS}", "SELECT seq", 1)
        beyond = await self._one(BEYOND.format(window=seqs), (*args, scan + 1, scan))
        return [_job(row[1:]) for row in rows], None if beyond is None else beyond[0] + 1

    @_unavailable
    async def cancel(self, tenant: str, job_id: str) -> Job | None:
        job = None
        for sql, args in ((CANCEL_QUEUED, (time.time(), job_id, tenant)),
                          (CANCEL_RUNNING, (job_id, tenant))):
            row = await self._one(sql, args)
            if row is not None:
                job = _job(row)
                break
        return await root_cancelled(self, tenant, job or await self.get(tenant, job_id))

    @_unavailable
    async def cancel_matching(self, tenant: str, *, status: str | None = None,
                              task: str | None = None,
                              queue: str | None = None) -> tuple[int, int]:
        given = {name: value for name, value in zip(("status", "task", "queue"),
                                                      (status, task, queue), strict=True)
                 if value is not None}
        # Live jobs are few next to the history: walk the status index (unary + keeps the
        # task's and queue's out of SQLite's choice), as list_sql does for a live status.
        filters = "".join(f" AND {'' if name == 'status' else '+'}{name} = :{name}"
                          for name in given)
        rows = await self._db.fetchall(CANCEL_MATCHING.format(filters=filters),
                                       {"tenant": tenant, "now": time.time(), **given})
        flagged = sum(1 for (after,) in rows if after == "running")
        return len(rows) - flagged, flagged

    @_unavailable
    async def workflow(self, tenant: str, workflow_id: str) -> list[Job]:
        return [_job(row) for row in await self._db.fetchall(WORKFLOW, (tenant, workflow_id))]

    @_unavailable
    async def workflows(self, tenant: str, limit: int) -> list[WorkflowInfo]:
        return workflows_from_rows(await self._db.fetchall(
            WORKFLOWS, {"tenant": tenant, "limit": limit}))

    @_unavailable
    async def cancel_workflow(self, tenant: str, workflow_id: str) -> tuple[int, int]:
        rows = await self._db.fetchall(
            CANCEL_MATCHING.format(filters=" AND workflow_id = :workflow_id"),
            {"tenant": tenant, "now": time.time(), "workflow_id": workflow_id})
        flagged = sum(1 for (after,) in rows if after == "running")
        return len(rows) - flagged, flagged

    @_unavailable
    async def retry(self, tenant: str, job_id: str) -> tuple[Job | None, bool]:
        row = await self._one(RETRY, (job_id, tenant))
        if row is not None:
            return _job(row), True
        return await self.get(tenant, job_id), False

    @_unavailable
    async def retry_dead(self, tenant: str) -> int:
        return len(await self._db.fetchall(RETRY_DEAD, (tenant,)))

    @_unavailable
    async def purge_dead(self, tenant: str) -> int:
        return len(await self._db.fetchall(PURGE_DEAD, (tenant,)))

    @_unavailable
    async def events(self, tenant: str, job_id: str, after: int = 0,
                     limit: int = 500) -> list[Event]:
        rows = await self._db.fetchall(EVENTS, (job_id, tenant, after, limit))
        return [Event(seq=seq, job_id=jid, at=at, kind=kind, data=json.loads(data))
                for seq, jid, at, kind, data in rows]

    @_unavailable
    async def watch(self, watches: list[Watch], limit: int = 500) -> list[Watched]:
        if not watches:
            return []
        rows = await self._db.fetchall(WATCH, {"watches": watch_params(watches),
                                               "limit": limit})
        return watched_from_rows(watches, rows)

    @_unavailable
    async def storage(self) -> Storage:
        def size(path: str) -> int:
            try:
                return os.stat(path).st_size
            except OSError:
                return 0

        (mode,) = await self._one(AUTO_VACUUM)
        return Storage(size(str(self.path)), size(f"{self.path}-wal"),
                       _AUTO_VACUUM.get(mode, "none"))

    @_unavailable
    async def schema_version(self) -> SchemaVersion:
        (found,) = await self._one(USER_VERSION)
        return SchemaVersion(found, SCHEMA_VERSION)

    async def checks(self) -> list[Check]:
        try:
            (version,) = await self._one(USER_VERSION)
            problems = [row[0] for row in await self._db.fetchall(QUICK_CHECK)]
        except sqlite3.Error as exc:
            return [Check("database", Status.FAIL, f"cannot read {self.path}: {exc}", RESTORE)]
        if problems != ["ok"]:
            return [Check("database", Status.FAIL,
                          f"{self.path} is damaged: {'; '.join(problems)}", RESTORE)]
        if version > SCHEMA_VERSION:
            return [Check("database", Status.FAIL, f"{self.path} has schema {version}, newer "
                          f"than this ScholarSource understands ({SCHEMA_VERSION})",
                          "upgrade ScholarSource to the version that wrote this database")]
        later = "" if version == SCHEMA_VERSION else \
            f"; serve migrates it from schema {version} to {SCHEMA_VERSION}"
        return [Check("database", Status.OK, f"{self.path} passes quick_check{later}")]

    async def backup(self, target: Path, *, force: bool = False) -> BackupResult:
        return await asyncio.to_thread(copy_database, self.path, target, force=force)

    @_unavailable
    async def check_writable(self) -> None:
        # One statement that needs the write lock and changes nothing. (BEGIN IMMEDIATE then
        # ROLLBACK as two calls could leave the lock held if the caller were cancelled
        # between them.)
        await self._db.fetchall(CHECK_WRITABLE)

    @_unavailable
    async def pools(self) -> list[PoolInfo]:
        return [PoolInfo(pid=pid, slots=json.loads(slots), slot_count=slot_count, busy=busy,
                         heartbeat_at=heartbeat_at, admission=json.loads(admission),
                         slot_rows=json.loads(slot_rows), owner=owner)
                for owner, pid, slots, slot_count, busy, heartbeat_at, admission, slot_rows
                in await self._db.fetchall(POOLS)]

    @_unavailable
    async def tasks(self) -> dict[str, TaskDefaults]:
        return tasks_from_rows(await self._db.fetchall(TASKS))

    @_unavailable
    async def counts(self, tenant: str | None = None) -> dict[str, int]:
        counts = {state.value: 0 for state in JobState}
        rows = await (self._db.fetchall(COUNTS) if tenant is None else
                      self._db.fetchall(TENANT_COUNTS, (tenant,)))
        counts.update({status: n for status, n in rows})
        return counts

    @_unavailable
    async def queue_counts(self, tenant: str | None) -> dict[str, dict[str, int]]:
        queues: dict[str, dict[str, int]] = {}
        rows = await self._db.fetchall(_for(QUEUE_COUNTS, tenant), {"tenant": tenant})
        for queue, status, n in rows:
            queues.setdefault(queue, {})[status] = n
        return queues

    @_unavailable
    async def finished_history(self, tenant: str, since: float, step: float,
                               buckets: int) -> list[int]:
        counts = [0] * buckets
        rows = await self._db.fetchall(FINISHED_HISTORY,
                                       {"tenant": tenant, "since": since, "step": step})
        for bucket, n in rows:
            counts[min(bucket, buckets - 1)] += n
        return counts

    @_unavailable
    async def recently_finished(self, tenant: str, since: float,
                                limit: int) -> list[Finished]:
        rows = await self._db.fetchall(RECENTLY_FINISHED,
                                       {"tenant": tenant, "since": since, "limit": limit})
        return [Finished(task, JobState(status), created, started, finished)
                for task, status, created, started, finished in rows]

    # -- the pool's side --------------------------------------------------------------------
    @_unavailable
    async def claim(self, owner: str, n: int, lease_seconds: float,
                    refs: list[int] | None = None, gate: Gate = OPEN) -> list[Claim]:
        now = time.time()
        args = {"owner": owner, "lease_until": now + lease_seconds, "now": now, "n": n,
                **_gate(gate)}
        if refs is None:
            rows = await self._db.fetchall(CLAIM, args)
            # Nothing taken: several tenants wait, or nothing may start (a read tells which,
            # so an idle pool's claims take the write lock no more often than before).
            turn = not rows and (await self._one(CONTESTED))[0]
            if turn:
                rows = await self._db.fetchall(FAIR_CLAIM, args)
        else:
            turn = (await self._one(CONTESTED))[0]
            rows = await self._db.fetchall(CLAIM_REFS, {**args, "refs": json.dumps(refs[:n])})
        claims = claims_from_rows(rows)
        if any(claim.has_parents for claim in claims):
            rows = await self._db.fetchall(PARENT_RESULTS, {
                "ids": json.dumps([claim.id for claim in claims if claim.has_parents])})
            claims = await with_parents(
                claims, [(c, results, json.loads(ids)) for c, results, ids in rows],
                self.artifacts_of)
        if turn:
            weights = dict(gate.weights)
            for tenant, taken in Counter(claim.tenant for claim in claims).items():
                await self._db.fetchall(ADVANCE, {"tenant": tenant,
                                                  "steps": taken / weights.get(tenant, 1)})
        return claims

    @_unavailable
    async def peek(self, n: int, gate: Gate = OPEN) -> list[tuple[int, str]]:
        args = {"n": n, "now": time.time(), **_gate(gate)}
        rows = await self._db.fetchall(PEEK, args)
        if not rows and (await self._one(CONTESTED))[0]:
            rows = await self._db.fetchall(FAIR_PEEK, args)
        return [(ref, task) for ref, task in rows]

    @_unavailable
    async def rate_free_at(self) -> float | None:
        at: float | None = (await self._one(RATE_FREE_AT, {"now": time.time()}))[0]
        return at

    # -- queues -----------------------------------------------------------------------------
    @_unavailable
    async def pause_queue(self, name: str, paused: bool) -> None:
        if paused:
            await self._db.fetchall(PAUSE, (name, time.time()))
        else:
            await self._db.fetchall(RESUME, (name,))

    @_unavailable
    async def paused_queues(self) -> set[str]:
        return {name for (name,) in await self._db.fetchall(PAUSED)}

    @_unavailable
    async def queue_stats(self, since: float, tenant: str | None = None) -> list[QueueStats]:
        depths, finishes = ((QUEUE_DEPTHS, QUEUE_FINISHES) if tenant is None
                            else (TENANT_QUEUE_DEPTHS, TENANT_QUEUE_FINISHES))
        args = {"tenant": tenant, "since": since}
        return queue_stats_from_rows(await self._db.fetchall(depths, args),
                                     await self._db.fetchall(finishes, args))

    @_unavailable
    async def rates(self, tenant: str | None = None) -> list[RateStats]:
        return [RateStats(task, queue, limit, window, started, queued)
                for task, queue, limit, window, started, queued
                in await self._db.fetchall(RATES if tenant is None else TENANT_RATES,
                                           {"tenant": tenant, "now": time.time()})]

    @_unavailable
    async def promote(self) -> float | None:
        await self._db.fetchall(PROMOTE, (time.time(),))
        next_due: float | None = (await self._one(NEXT_DUE))[0]
        return next_due

    @_unavailable
    async def renew(self, owner: str, held: list[tuple[str, int]],
                    lease_seconds: float) -> None:
        if held:
            await self._db.fetchall(RENEW, {"until": time.time() + lease_seconds,
                                            "owner": owner, "held": json.dumps(held)})

    @_unavailable
    async def finish(self, outcomes: list[Outcome], max_crashes: int) -> dict[str, JobState]:
        head = (time.time(), max_crashes)
        statements = []
        for start in range(0, len(outcomes), FINISH_ROWS):
            chunk = outcomes[start:start + FINISH_ROWS]
            statements.append((finish_sql(len(chunk)),
                               [*head, *(value for o in chunk for value in _outcome_row(o))]))
        if any(o.artifacts or o.then is not None for o in outcomes):
            return await self._finish_with_successors(statements, outcomes)
        if len(statements) == 1:  # the common case stays one statement
            rows = await self._db.fetchall(*statements[0])
        else:
            rows = [row for done in await self._atomically(statements) for row in done]
        return {job_id: JobState(status) for job_id, status in rows}

    async def _finish_with_successors(self, statements: list[tuple[str, Any]],
                                      outcomes: list[Outcome]) -> dict[str, JobState]:
        """FINISH, then what a success brings: its files and its continuation (only for the
        jobs FINISH left succeeded), in one transaction."""

        async def run(db: _Driver) -> dict[str, JobState]:
            states = {job_id: JobState(status) for query, params in statements
                      for job_id, status in await db.fetchall(query, params)}
            batch = artifact_batch(outcomes, {job_id for job_id, state in states.items()
                                              if state is JobState.SUCCEEDED})
            if batch:
                await db.fetchall(ADD_ARTIFACTS, {"batch": json.dumps(batch)})
            thens = continuations(outcomes, states)
            await _add_children(db, CONTINUE_PARENTS, [[s.parent_id] for s in thens], thens)
            return states

        return await self._in_transaction(run)

    @_unavailable
    async def artifacts_of(self, job_ids: list[str]) -> dict[str, list[Artifact]]:
        return artifacts_from_rows(await self._db.fetchall(ARTIFACTS_OF,
                                                           {"ids": json.dumps(job_ids)}))

    @_unavailable
    async def artifact_bytes(self) -> int:
        total: int = (await self._one(ARTIFACT_BYTES))[0]
        return total

    @_unavailable
    async def kept_attempts(self, job_ids: list[str]) -> dict[str, set[int]]:
        kept: dict[str, set[int]] = {}
        for job_id, attempt in await self._db.fetchall(KEPT_ATTEMPTS,
                                                       {"ids": json.dumps(job_ids)}):
            kept.setdefault(job_id, set()).add(attempt)
        return kept

    @_unavailable
    async def graves(self, limit: int) -> list[str]:
        return [job_id for (job_id,) in await self._db.fetchall(GRAVES, {"limit": limit})]

    @_unavailable
    async def bury(self, job_ids: list[str]) -> None:
        await self._db.fetchall(BURY, {"ids": json.dumps(job_ids)})

    @_unavailable
    async def note(self, notes: list[Note]) -> None:
        batch = [{"id": n.job_id, "token": n.token, "kind": n.kind, "data": n.data}
                 for n in notes]
        # Only the newest progress of each attempt matters for the job row.
        latest = {(n.job_id, n.token): n for n in notes if n.kind == "progress"}
        progress = [{"id": n.job_id, "token": n.token, "kind": n.kind, "data": n.data}
                    for n in latest.values()]
        # One transaction: a progress update that fails must not leave the events written,
        # or the pool's retry would write every line twice.
        await self._atomically([
            (ADD_EVENTS, {"batch": json.dumps(batch), "now": time.time()}),
            *([(PROGRESS, {"batch": json.dumps(progress)})] if progress else [])])

    @_unavailable
    async def spawn(self, spawns: list[Spawn], policy: QuotaPolicy) -> None:
        # In the pool's batch when there is one (then part of its transaction: a shielded
        # task of its own would wait on the batch's lock forever).
        await self._in_transaction(lambda db: _add_children(
            db, SPAWN_PARENTS, [[s.parent_id, s.token] for s in spawns], spawns, policy))

    @_unavailable
    async def cancel_requested(self, owner: str) -> list[tuple[str, int]]:
        return [(job_id, token) for job_id, token in
                await self._db.fetchall(CANCEL_REQUESTS, (owner,))]

    @_unavailable
    async def requeue(self, job_ids_tokens: Sequence[tuple[str, int]], cause: str) -> int:
        return len(await self._db.fetchall(REQUEUE, {
            "batch": json.dumps(job_ids_tokens), "cause": cause, "code": ErrorCode.INTERRUPTED,
            "now": time.time()}))

    @_unavailable
    async def recover(self, owner: str, *, max_crashes: int, box: str | None = None,
                      culprit: tuple[str, int] | None = None) -> int:
        now = time.time()
        if box is not None:
            await self._db.fetchall(FORGET_POOLS, {"owner": owner, "box": box,
                                                   "before": now - POOL_FORGET_SECONDS})
            sql, code = RECOVER_BOX, ErrorCode.POOL_DIED
            cause = (ErrorCode.INTERRUPTED.explain("the pool process died") if culprit is None
                     else code.explain("the pool process died while handling this job"))
        else:
            sql, code = RECOVER_EXPIRED, ErrorCode.LEASE_EXPIRED
            cause = ErrorCode.INTERRUPTED.explain("its lease expired (the pool stopped renewing "
                                                  "it)")
            culprit = None
        job_id, token = culprit or (None, None)
        rows = await self._db.fetchall(sql, {
            "owner": owner, "box": box, "now": now, "cause": cause, "code": code,
            "max_crashes": max_crashes, "culprit": job_id, "culprit_token": token,
            "spared": spared_cause(box is None)})
        return len(rows)

    @_unavailable
    async def publish_tasks(self, tasks: list[TaskDefaults]) -> None:
        batch = json.dumps([(t.name, t.queue, t.timeout, t.max_attempts, t.memory,
                             t.memory_limit, t.backoff_base, t.backoff_max,
                             None if t.params is None else json.dumps(t.params),
                             t.cache_ttl, t.unique, t.rate_limit, t.rate_window,
                             t.concurrency_limit)
                            for t in tasks])
        await self._atomically([(CLEAR_TASKS, ()), (ADD_TASKS, (batch,))])

    @_unavailable
    async def heartbeat(self, info: PoolInfo) -> None:
        await self._db.fetchall(HEARTBEAT, (info.owner, info.pid, json.dumps(info.slots),
                                            info.slot_count, info.busy, info.heartbeat_at,
                                            json.dumps(info.admission),
                                            json.dumps(info.slot_rows)))

    # -- schedules --------------------------------------------------------------------------
    @_unavailable
    async def schedule_states(self, tenant: str, names: list[str]) -> dict[str, ScheduleState]:
        rows = await self._db.fetchall(SCHEDULE_STATES,
                                       {"names": json.dumps(names), "tenant": tenant})
        return schedule_states_from_rows(rows)

    @_unavailable
    async def fire(self, new: NewJob | None, name: str, fire_time: float) -> Job | None:
        jobs = [] if new is None else _new_jobs([new])
        statements: list[tuple[str, Any]] = [(FIRE_CURSOR, (name, fire_time))]
        if new is not None:
            statements.insert(0, (FIRE, (*_row(new, jobs[0]), name)))
        inserted = (await self._atomically(statements))[0]
        return jobs[0] if new is not None and inserted else None

    @_unavailable
    async def set_paused(self, name: str, paused: bool, now: float) -> None:
        await self._db.fetchall(SET_PAUSED, {"name": name, "paused": paused, "now": now})

    # -- retention --------------------------------------------------------------------------
    @_unavailable
    async def prune(self, state: JobState, before: float, limit: int) -> int:
        return len(await self._db.fetchall(PRUNE, {"state": state.value, "before": before,
                                                   "limit": limit}))

    @_unavailable
    async def count_expired(self, state: JobState, before: float) -> int:
        n: int = (await self._one(COUNT_EXPIRED, {"state": state.value, "before": before}))[0]
        return n

    @_unavailable
    async def compact(self, max_pages: int) -> bool:
        free, total = await self._one(FREE_PAGES)
        excess = free - (total - free) // _SLACK
        if excess > 0:
            await self._db.script(RELEASE_PAGES.format(pages=int(min(excess, max_pages))))
        if excess > max_pages:
            return True
        await self._db.fetchall(CHECKPOINT)
        return False

    @_unavailable
    async def vacuum(self) -> None:
        await self._db.script(VACUUM)

    # -- moving to another store ------------------------------------------------------------
    @_unavailable
    async def export_rows(self, after: int, limit: int, *,
                          everything: bool) -> tuple[Carried, int | None]:
        """Up to `limit` jobs past the row `after` (0: from the start) that have not ended
        (with `everything`, all of them), with their events, for another store's
        `import_rows`; from the start, also the queue pauses and schedule states. Returns
        them and the row to go on after (None: no more). For a stopped server's database
        only: a job it left running comes as interrupted (queued, uncharged)."""
        rows = await self._db.fetchall(EXPORT_JOBS, {
            "after": after, "limit": limit, "everything": everything, "now": time.time(),
            "code": ErrorCode.INTERRUPTED,
            "cause": ErrorCode.INTERRUPTED.explain("its server stopped before it finished")})
        jobs = [json.loads(text) for _, text in rows]
        ids = json.dumps([job["id"] for job in jobs])
        events = [json.loads(text) for (text,) in
                  await self._db.fetchall(EXPORT_EVENTS, {"ids": ids})]
        deps = [[parent, child] for parent, child in
                await self._db.fetchall(EXPORT_DEPS, {"ids": ids})]
        artifacts = [json.loads(text) for (text,) in
                     await self._db.fetchall(EXPORT_ARTIFACTS, {"ids": ids})]
        carried = Carried(jobs, events, deps, artifacts=artifacts)
        if after == 0:
            carried.queues.extend(json.loads(t) for (t,) in await self._db.fetchall(
                EXPORT_QUEUES))
            carried.schedules.extend(json.loads(t) for (t,) in await self._db.fetchall(
                EXPORT_SCHEDULES))
        return carried, (rows[-1][0] if len(rows) == limit else None)

    @_unavailable
    async def import_rows(self, carried: Carried) -> Imported:
        async def run(db: _Driver) -> Imported:
            jobs = await db.fetchall(IMPORT_JOBS, {"jobs": json.dumps(carried.jobs)})
            events = await db.fetchall(IMPORT_EVENTS, {"events": json.dumps(carried.events)})
            await db.fetchall(IMPORT_DEPS, {"deps": json.dumps(carried.deps)})
            # Only the jobs imported now: one already here keeps the artifacts it has.
            await db.fetchall(IMPORT_ARTIFACTS, {
                "artifacts": json.dumps(carried.artifacts),
                "imported": json.dumps([job_id for (job_id,) in jobs])})
            queues = await db.fetchall(IMPORT_QUEUES, {"queues": json.dumps(carried.queues)})
            schedules = await db.fetchall(IMPORT_SCHEDULES,
                                          {"schedules": json.dumps(carried.schedules)})
            return Imported(len(jobs), len(carried.jobs) - len(jobs), len(events),
                            len(queues), len(schedules))

        return await self._in_transaction(run)

    # -- API keys and dashboard sessions ----------------------------------------------------
    @_unavailable
    async def create_key(self, key: ApiKey) -> None:
        await self._db.fetchall(CREATE_KEY, (key.id, key.tenant, key.role, key.name, key.rate,
                                             key.created_at, key.revoked_at, key.digest))

    @_unavailable
    async def list_keys(self) -> list[ApiKey]:
        return [key_from_row(row) for row in await self._db.fetchall(LIST_KEYS)]

    @_unavailable
    async def find_key(self, key_id: str) -> ApiKey | None:
        row = await self._one(FIND_KEY, (key_id,))
        return None if row is None else key_from_row(row)

    @_unavailable
    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        # Only `scholarsource keys revoke` revokes: one caller on its connection.
        rows, _ = await self._atomically([(REVOKE_KEY, {"id": key_id, "now": now}),
                                          (END_KEY_SESSIONS, {"id": key_id})])
        return key_from_row(rows[0]) if rows else None

    @_unavailable
    async def create_session(self, token_digest: str, key_id: str, expires_at: float,
                             now: float) -> None:
        # Two statements, each its own transaction: the expiry sweep needs no atomicity.
        await self._db.fetchall(EXPIRE_SESSIONS, (now,))
        await self._db.fetchall(CREATE_SESSION, (token_digest, key_id, expires_at))

    @_unavailable
    async def find_session(self, token_digest: str, now: float) -> ApiKey | None:
        row = await self._one(FIND_SESSION, (token_digest, now))
        return None if row is None else key_from_row(row)

    @_unavailable
    async def end_session(self, token_digest: str) -> None:
        await self._db.fetchall(END_SESSION, (token_digest,))
