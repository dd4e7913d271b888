"""The PostgreSQL store: the same contract as the SQLite store, for several boxes sharing one
queue. Every statement lives in `sql.py`; this module binds parameters and shapes rows."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from scholarsource.errors import BackupUnsupported, StoreUnavailable
from scholarsource.findings import Check, Status
from scholarsource.keys import ApiKey
from scholarsource.quotas import Ask, Level, QuotaPolicy, QuotaState, TenantOverride
from scholarsource.store.admission import Admission, Guard, QuotaTx, admit
from scholarsource.store.base import (
    OPEN,
    POOL_FORGET_SECONDS,
    Artifact,
    BackupResult,
    Carried,
    Claim,
    Ending,
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
from scholarsource.store.deps import depths, links, with_parents
from scholarsource.store.fanout import continuations, named, over_quota, placed, root_cancelled
from scholarsource.store.postgres import schema, sql
from scholarsource.store.postgres.connection import (
    Database,
    open_pool,
    unavailable,
)
from scholarsource.store.postgres.text import clean, dumps
from scholarsource.store.postgres.wakeup import CHANNEL, Listener
from scholarsource.store.rows import (
    artifact_batch,
    artifacts_from_rows,
    claims_from_rows,
    job_from_row,
    job_with_artifacts,
    key_from_row,
    like_pattern,
    new_jobs,
    override_from_row,
    queue_stats_from_rows,
    quota_state_from_rows,
    schedule_states_from_rows,
    tasks_from_rows,
    watch_params,
    watched_from_rows,
    workflows_from_rows,
)
from scholarsource.store.rules import spared_cause

if TYPE_CHECKING:
    from scholarsource.config import Config

log = logging.getLogger("scholarsource.store")
T = TypeVar("T")


def _rows(news: list[NewJob], jobs: list[Job]) -> str:
    """New jobs as the jsonb array sql.SUBMIT reads (objects keyed by column)."""
    return dumps([{
        "id": j.id, "tenant": j.tenant, "task": j.task, "queue": j.queue,
        "priority": j.priority, "params": json.dumps(j.params),
        "max_attempts": j.max_attempts, "timeout": j.timeout, "created_at": j.created_at,
        "memory_limit": j.memory_limit, "backoff_base": j.backoff_base,
        "backoff_max": j.backoff_max, "idempotency_key": j.idempotency_key,
        "fingerprint": new.fingerprint, "cache_ttl": j.cache_ttl,
        "bypass_cache": j.bypass_cache, "unique_job": j.unique, "status": j.status.value,
        "run_at": j.run_at, "schedule": j.schedule, "scheduled_for": j.scheduled_for,
        "triggered": new.triggered, "concurrency_key": j.concurrency_key,
        "concurrency_limit": j.concurrency_limit, "depends_on": j.depends_on or None,
        "on_parent_failure": j.on_parent_failure, "waiting_for": len(j.depends_on),
        "workflow_id": j.workflow_id, "step": j.step, "parent_id": j.parent_id,
    } for new, j in zip(news, jobs, strict=True)])


# A submit whose parents another transaction holds (a finish, a claim) is sent again
# after a short pause, this many times in all: ~0.8 s, far past any finish's transaction.
_LOCKED_TRIES = 12


async def _while_parents_locked(work: Callable[[], Awaitable[T]]) -> T:
    """`work` (a whole transaction that links parents: sql.LINK_PARENTS), sent again while
    a parent's row is locked; StoreUnavailable (503, retry) if it stays locked."""
    for attempt in range(_LOCKED_TRIES):
        try:
            return await work()
        except psycopg.errors.LockNotAvailable:
            await asyncio.sleep(0.01 * (attempt + 1))
    raise StoreUnavailable("the jobs this submit depends on stayed locked; send it again")


async def _link(conn: psycopg.AsyncConnection[Any], jobs: list[Job]) -> dict[str, Job]:
    """Link just-inserted dependent jobs to their parents, inside the insert's transaction;
    returns the jobs that parents already final changed (see sql.SETTLE)."""
    pairs = links(jobs)
    args = {"children": [child for child, _ in pairs], "parents": [p for _, p in pairs],
            "now": time.time()}
    found = await (await conn.execute(sql.LINK_PARENTS, clean(args))).fetchall()
    levels = depths(jobs, found)
    await conn.execute(sql.LINK_EDGES, clean(args))
    await conn.execute(sql.LINK_DEPTHS, {"depths": dumps(levels)})
    rows = await (await conn.execute(sql.SETTLE, clean(args))).fetchall()
    return {job.id: job for job in map(job_from_row, rows)}


async def _add_children(conn: psycopg.AsyncConnection[Any], parents_sql: str,
                        parents: list[list[Any]], spawns: list[Spawn],
                        policy: QuotaPolicy | None = None) -> None:
    """Insert the `spawns` whose parent `parents_sql` keeps (sql.SPAWN_PARENTS), inside the
    caller's transaction, within the max_queued of `policy` (None: no check; the tenants'
    quota locks are taken as a submit takes them); an id already there stays as it is, and
    only the new rows are linked to the siblings they depend on."""
    if not spawns:
        return
    # The tenants' quota locks first, as a submit takes them, and only then the parents'
    # rows: a submit that depends on a parent holds its quota lock while it locks the
    # parent FOR SHARE, so the other order could deadlock with it. The server's quota lock
    # exclusive: a fan-out's children may be many.
    state = None if policy is None else await _PostgresQuotaTx(
        conn, _ServerQuota.of(policy.max_queued, len(spawns), shared=False)).state(
        sorted({spawn.job.tenant for spawn in spawns}), [])
    rows = await (await conn.execute(parents_sql, {"batch": dumps(parents)})).fetchall()
    existing = {job_id for (job_id,) in await (await conn.execute(
        sql.EXISTING, {"ids": named(spawns)})).fetchall()}
    news = placed(spawns, dict(rows), existing)
    if not news:
        return
    refused: dict[str, str] = {}
    if state is not None and policy is not None:
        refused = over_quota(news, state, policy)
    jobs = [dataclasses.replace(job, status=JobState.CANCELLED) if job.id in refused else job
            for job in new_jobs(news)]
    inserted = {job_id for (job_id,) in await (await conn.execute(
        sql.SUBMIT_ONCE, {"rows": _rows(news, jobs)})).fetchall()}
    if refused:
        await conn.execute(sql.REFUSE, {"refused": dumps(list(refused.items())),
                                        "now": time.time()})
    linked = [job for job in jobs if job.id in inserted and job.depends_on
              and job.id not in refused]
    if linked:
        await _link(conn, linked)


# Admission's quick path takes a group commit's jobs, or a batch's, in one statement (as many
# as SQLite's: store/sqlite.py, GUARDED_SIZES); also the most jobs a holder of the server's
# quota lock in shared mode inserts (sql.QUOTA_MARGIN).
_GUARDED_ROWS = 1024
_NO_CAP = 2**62


@dataclasses.dataclass(frozen=True)
class _ServerQuota:
    """How a quota transaction holds the server-wide max_queued (`cap`) for `adding` jobs:
    the lock shared, admitting only far from the cap, or exclusive (sql.SERVER_QUOTA)."""

    cap: int
    adding: int
    shared: bool

    @classmethod
    def of(cls, cap: int | None, adding: int, shared: bool) -> _ServerQuota | None:
        """None without a cap; never shared for more jobs than the margin counts per holder."""
        if cap is None:
            return None
        return cls(cap, adding, shared and adding <= _GUARDED_ROWS)


class _NearCap(Exception):
    """Raised in a quota transaction that holds the server's quota lock shared when its jobs
    could reach max_queued: it is rolled back and run again with the lock exclusive."""


def _gate(gate: Gate) -> dict[str, list[str] | str | None]:
    return {"skip": list(gate.skip), "only": None if gate.only is None else list(gate.only),
            "weights": json.dumps(dict(gate.weights))}


class _PostgresQuotaTx:
    """A quota transaction on PostgreSQL (see store/admission.py), on one connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Any],
                 server: _ServerQuota | None) -> None:
        self._conn = conn
        self._server = server
        # Whether the server's jobs came within the margin of its cap (None: not read).
        self.near: bool | None = None

    async def _rows(self, query: str, params: Any) -> list[Any]:
        cursor = await self._conn.execute(query, clean(params))
        return await cursor.fetchall() if cursor.description is not None else []

    async def state(self, tenants: list[str], buckets: list[str]) -> QuotaState:
        server = self._server
        names = [f"quota:{t}" for t in tenants] + [f"quota:{b}" for b in buckets]
        ((_, margin),) = await self._rows(sql.QUOTA_LOCKS, {
            "names": names if server is None else [*names, sql.SERVER_QUOTA],
            "shared": server is not None and server.shared, "room": _GUARDED_ROWS})
        if len(tenants) > 1:  # one tenant's row alone makes no cycle
            await self._rows(sql.LOCK_LIVE, {"tenants": tenants})
        state = quota_state_from_rows(await self._rows(sql.QUOTA_STATE, {
            "tenants": tenants, "buckets": buckets}))
        self.near = server is not None and \
            sum(state.live.values()) + server.adding + margin > server.cap
        if self.near and server is not None and server.shared:
            raise _NearCap
        return state

    async def insert(self, news: list[NewJob], jobs: list[Job]) -> None:
        await self._rows(sql.SUBMIT, {"rows": _rows(news, jobs)})

    def _args(self, new: NewJob, job: Job) -> dict[str, Any]:
        return {"rows": _rows([new], [job]), "tenant": new.tenant,
                "fingerprint": new.fingerprint, "key": new.idempotency_key,
                "since": job.created_at - (new.cache_ttl or 0.0)}

    async def insert_once(self, new: NewJob, job: Job) -> bool:
        cached = new.cache_ttl is not None and not new.bypass_cache
        return bool(await self._rows(sql.SUBMIT_UNCACHED if cached else sql.SUBMIT_ONCE,
                                     self._args(new, job)))

    async def insert_new(self, news: list[NewJob], jobs: list[Job]) -> set[str]:
        return {job_id for (job_id,) in await self._rows(sql.SUBMIT_ONCE,
                                                         {"rows": _rows(news, jobs)})}

    async def existing(self, new: NewJob, job: Job) -> tuple[Job, Reused] | None:
        cached = new.cache_ttl is not None and not new.bypass_cache
        lookups = [(new.idempotency_key is not None, Reused.IDEMPOTENT, sql.BY_KEY),
                   (cached, Reused.CACHED, sql.CACHED),
                   (new.unique, Reused.UNIQUE, sql.LIVE_TWIN)]
        for wanted, why, query in lookups:
            rows = await self._rows(query, self._args(new, job)) if wanted else []
            if rows:
                return job_from_row(rows[0]), why
        return None

    async def save(self, levels: dict[str, Level]) -> None:
        await self._rows(sql.SAVE_LEVELS, {
            "names": list(levels), "tokens": [level.tokens for level in levels.values()],
            "ats": [level.at for level in levels.values()]})

    async def link(self, jobs: list[Job]) -> dict[str, Job]:
        return await _link(self._conn, jobs)


class PostgresStore(Store):
    """The shared store: one PostgreSQL database. Open it with `connect` (or `open`)."""

    def __init__(self, db: Database, listen_url: str) -> None:
        self._db = db
        self._listen_url = listen_url
        self._notifying: set[asyncio.Task[None]] = set()
        # A hint from the last quota transaction (correctness never depends on it): near
        # the cap, submits go straight to the exclusive one (sql.SERVER_QUOTA).
        self._near_cap = False
        # A hint from the last claim, like _near_cap: some queue was paused, so the lone
        # tenant's claim takes the open queues' heads (sql.HEADS_ORDER). Either path is exact.
        self._paused_seen = False

    @classmethod
    async def connect(cls, config: Config, role: str) -> PostgresStore:
        """Connect to `config.database` (a postgresql:// URL, already migrated: see
        `migrate`) with a pool sized for `role`: "api", "pool" or "cli"."""
        return await cls.open(config.database.reveal(), role=role,
                              listen_url=config.database_listen.reveal() or None)

    @classmethod
    async def migrate(cls, config: Config) -> int:
        """Create or upgrade the schema of `config.database`; returns its version."""
        return await asyncio.to_thread(schema.migrate, config.database.reveal())

    @classmethod
    async def open(cls, url: str, *, role: str = "cli",
                   listen_url: str | None = None) -> PostgresStore:
        """Connect to `url` with a pool sized for `role`. `listen_url` is where `listen`
        connects (default `url`): LISTEN needs a session, so behind a PgBouncer in
        transaction mode it must name the server itself (or a session-mode pool)."""
        return cls(Database(await open_pool(url, role)), listen_url or url)

    async def close(self) -> None:
        await self._db.close()

    # -- wake-ups ---------------------------------------------------------------------------
    def wake(self, kind: Wake) -> None:
        # NOTIFY is a statement: sent in the background, so a request never waits for it and
        # never fails for it (the pools poll anyway).
        task = asyncio.get_running_loop().create_task(self._notify(kind))
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self, kind: Wake) -> None:
        try:
            await self._db.fetchall("SELECT pg_notify(%(channel)s, %(kind)s)",
                                    {"channel": CHANNEL, "kind": kind.value})
        except Exception as exc:  # a hint lost is latency, never an error
            log.debug("wake-up not sent: %s", exc)

    async def listen(self) -> WakeSource:
        return await asyncio.to_thread(Listener.open, self._listen_url)

    # -- moving in from another store -------------------------------------------------------
    @unavailable
    async def import_rows(self, carried: Carried) -> Imported:
        jobs, events, queues, schedules = await self._db.one(sql.IMPORT, {
            "jobs": dumps(carried.jobs), "events": dumps(carried.events),
            "deps": dumps(carried.deps), "artifacts": dumps(carried.artifacts),
            "queues": dumps(carried.queues), "schedules": dumps(carried.schedules)})
        return Imported(jobs, len(carried.jobs) - jobs, events, queues, schedules)

    # -- the API's side ---------------------------------------------------------------------
    @unavailable
    async def submit_many(self, news: list[NewJob]) -> list[Job]:
        jobs = new_jobs(news)
        if any(job.depends_on for job in jobs):
            return await _while_parents_locked(
                lambda: asyncio.shield(self._submit_linked(news, jobs)))
        await self._db.fetchall(sql.SUBMIT, {"rows": _rows(news, jobs)})
        return jobs

    async def _submit_linked(self, news: list[NewJob], jobs: list[Job]) -> list[Job]:
        async with self._db.pool.connection() as conn, conn.transaction():
            await conn.execute(sql.SUBMIT, {"rows": _rows(news, jobs)})
            changed = await _link(conn, [job for job in jobs if job.depends_on])
        return [changed.get(job.id, job) for job in jobs]

    @unavailable
    async def submit_once(self, new: NewJob) -> tuple[Job, Reused | None]:
        fingerprint = new.fingerprint
        cached = new.cache_ttl is not None and not new.bypass_cache
        # A few rounds, as the SQLite store does: the job that stopped the insert may leave
        # its state (or be purged) before the lookup, and then the insert may go through.
        for _ in range(3):
            (job,) = new_jobs([new])
            since = job.created_at - (new.cache_ttl or 0.0)
            args = {"rows": _rows([new], [job]), "tenant": new.tenant,
                    "fingerprint": fingerprint, "since": since, "key": new.idempotency_key}
            if await self._db.fetchall(sql.SUBMIT_UNCACHED if cached else sql.SUBMIT_ONCE, args):
                return job, None
            lookups = [(new.idempotency_key is not None, Reused.IDEMPOTENT, sql.BY_KEY),
                       (cached, Reused.CACHED, sql.CACHED),
                       (new.unique, Reused.UNIQUE, sql.LIVE_TWIN)]
            for wanted, why, query in lookups:
                row = await self._db.one(query, args) if wanted else None
                if row is not None:
                    return job_from_row(row), why
        raise StoreUnavailable("the job this submit matched kept changing; send it again")

    @asynccontextmanager
    async def _quota_tx(self, server: _ServerQuota | None) -> AsyncIterator[QuotaTx]:
        async with self._db.pool.connection() as conn, conn.transaction():
            tx = _PostgresQuotaTx(conn, server)
            try:
                yield tx
            finally:
                if tx.near is not None:
                    self._near_cap = tx.near

    @unavailable
    async def admit(self, groups: list[tuple[Ask, list[NewJob]]],
                    policy: QuotaPolicy) -> list[Admission]:
        adding = sum(len(news) for _, news in groups)
        if not self._near_cap:
            try:
                return await _while_parents_locked(lambda: admit(
                    self._quota_tx(_ServerQuota.of(policy.max_queued, adding, shared=True)),
                    groups, policy, self._insert_guarded, _GUARDED_ROWS))
            except _NearCap:  # rolled back, nothing written
                pass
        # Near the cap (this submit found it so, or the last quota transaction did): the
        # server's quota lock exclusive, the count exact.
        return await _while_parents_locked(lambda: admit(
            self._quota_tx(_ServerQuota.of(policy.max_queued, adding, shared=False)),
            groups, policy))

    async def _insert_guarded(self, news: list[NewJob], jobs: list[Job], guard: Guard) -> bool:
        if guard.caps:  # a tenant's max_queued must be exact: the quota transaction
            return False
        args = {"rows": _rows(news, jobs), "tenants": guard.tenants, "total": guard.total}
        if guard.max_queued is None:
            return bool(await self._db.fetchall(sql.SUBMIT_GUARDED,
                                                {**args, "cap": _NO_CAP, "room": 0}))
        return await self._insert_sharing(
            {**args, "cap": guard.max_queued, "room": _GUARDED_ROWS})

    async def _insert_sharing(self, args: dict[str, Any]) -> bool:
        """SUBMIT_GUARDED under the server's quota lock, shared: both statements in one
        query string, which PostgreSQL runs as one transaction, each statement with a
        snapshot of its own (the insert's taken once the lock is held). One round trip,
        like the lone statement; a pipelined BEGIN/lock/insert/COMMIT cost twice its
        client CPU (bench/pg_guarded_submit.py). Several statements in one string need
        client-side binding (psycopg quotes each value). No transaction is left open if the
        caller is cancelled: the server runs the string whole or not at all."""
        async with self._db.pool.connection() as conn:
            cursor = psycopg.AsyncClientCursor(conn)
            await cursor.execute(f"{sql.QUOTA_SHARED}; {sql.SUBMIT_GUARDED}", clean(args))
            cursor.nextset()  # past the lock's row, to the insert's
            return bool(await cursor.fetchall())

    @unavailable
    async def tenant_overrides(self) -> dict[str, TenantOverride]:
        return {tenant: override_from_row(*rest)
                for tenant, *rest in await self._db.fetchall(sql.TENANT_OVERRIDES)}

    @unavailable
    async def set_tenant_limits(self, tenant: str, override: TenantOverride) -> None:
        rate = override.rate
        await self._db.fetchall(sql.SET_TENANT_LIMITS, {
            "tenant": tenant, "rate_limit": None if rate is None else rate.limit,
            "rate_window": None if rate is None else rate.window,
            "max_queued": override.max_queued, "weight": override.weight})

    @unavailable
    async def clear_tenant_limits(self, tenant: str) -> bool:
        return bool(await self._db.fetchall(sql.CLEAR_TENANT_LIMITS, {"tenant": tenant}))

    @unavailable
    async def live_counts(self) -> dict[str, int]:
        return {tenant: int(live) for tenant, live in await self._db.fetchall(sql.LIVE_COUNTS)}

    @unavailable
    async def get(self, tenant: str | None, job_id: str) -> Job | None:
        row = await self._db.one(sql.GET_ANY_TENANT if tenant is None else sql.GET,
                                 {"id": job_id, "tenant": tenant})
        return None if row is None else job_with_artifacts(row)

    @unavailable
    async def list_jobs(self, tenant: str | None, *, status: str | None = None,
                        task: str | None = None, queue: str | None = None, limit: int = 50,
                        cursor: int | None = None, search: str | None = None,
                        search_scan: int = 10_000,
                        schedule: str | None = None) -> tuple[list[Job], int | None]:
        given = {name: value for name, value in zip(sql.LIST_FILTERS,
                                                      (status, task, queue, schedule),
                                                      strict=True) if value is not None}
        if tenant is None:
            return await self._every_tenant(given, cursor, limit, search, search_scan)
        args: dict[str, Any] = {"tenant": tenant, "cursor": cursor, **given}
        window = sql.list_sql(set(given), paged=cursor is not None)
        if search is None:
            rows = await self._db.fetchall(window, {**args, "limit": limit + 1})
            next_cursor = rows[limit - 1][0] if len(rows) > limit else None
            return [job_from_row(row[1:]) for row in rows[:limit]], next_cursor
        # The newest `search_scan` jobs the filters match, narrowed to those whose id, task or
        # params (JSON text: `search` as JSON encodes it) contain it, in any case.
        rows = await self._db.fetchall(sql.SEARCH.format(window=window), {
            **args, "limit": search_scan, "pattern": like_pattern(search),
            "json_pattern": like_pattern(json.dumps(search)[1:-1]), "page": limit + 1})
        if len(rows) > limit:
            return [job_from_row(row[1:]) for row in rows[:limit]], rows[limit - 1][0]
        seqs = window.replace(f"SELECT seq, {sql.JOB_COLUMNS}", "SELECT seq", 1)
        beyond = await self._db.one(sql.BEYOND.format(window=seqs),
                                 {**args, "limit": search_scan + 1, "scan": search_scan})
        return [job_from_row(row[1:]) for row in rows], None if beyond is None else beyond[0] + 1

    async def _every_tenant(self, given: dict[str, str], cursor: int | None, limit: int,
                            search: str | None, scan: int) -> tuple[list[Job], int | None]:
        page, beyond = sql.every_tenant_sql(set(given), paged=cursor is not None,
                                            search=search is not None)
        args: dict[str, Any] = {**given, "cursor": cursor, "scan": scan, "page": limit + 1}
        if search is not None:
            args.update(pattern=like_pattern(search),
                        json_pattern=like_pattern(json.dumps(search)[1:-1]))
        rows = await self._db.fetchall(page, args)
        if len(rows) > limit:
            return [job_from_row(row[1:]) for row in rows[:limit]], rows[limit - 1][0]
        past = await self._db.one(beyond, args)
        return [job_from_row(row[1:]) for row in rows], None if past is None else past[0] + 1

    @unavailable
    async def cancel(self, tenant: str, job_id: str) -> Job | None:
        args = {"id": job_id, "tenant": tenant, "now": time.time()}
        job = None
        for query in (sql.CANCEL_QUEUED, sql.CANCEL_RUNNING):
            row = await self._db.one(query, args)
            if row is not None:
                job = job_from_row(row)
                break
        return await root_cancelled(self, tenant, job or await self.get(tenant, job_id))

    @unavailable
    async def cancel_matching(self, tenant: str, *, status: str | None = None,
                              task: str | None = None,
                              queue: str | None = None) -> tuple[int, int]:
        given = {name: value for name, value in zip(("status", "task", "queue"),
                                                      (status, task, queue), strict=True)
                 if value is not None}
        filters = "".join(f" AND jobs.{name} = %({name})s" for name in given)
        rows = await self._db.fetchall(sql.CANCEL_MATCHING.format(filters=filters),
                                 {"tenant": tenant, "now": time.time(), **given})
        flagged = sum(1 for (after,) in rows if after == "running")
        return len(rows) - flagged, flagged

    @unavailable
    async def workflow(self, tenant: str, workflow_id: str) -> list[Job]:
        return [job_from_row(row) for row in await self._db.fetchall(
            sql.WORKFLOW, {"tenant": tenant, "workflow_id": workflow_id})]

    @unavailable
    async def workflows(self, tenant: str, limit: int) -> list[WorkflowInfo]:
        return workflows_from_rows(await self._db.fetchall(
            sql.WORKFLOWS, {"tenant": tenant, "limit": limit}))

    @unavailable
    async def cancel_workflow(self, tenant: str, workflow_id: str) -> tuple[int, int]:
        rows = await self._db.fetchall(
            sql.CANCEL_MATCHING.format(filters=" AND jobs.workflow_id = %(workflow_id)s"),
            {"tenant": tenant, "now": time.time(), "workflow_id": workflow_id})
        flagged = sum(1 for (after,) in rows if after == "running")
        return len(rows) - flagged, flagged

    @unavailable
    async def retry(self, tenant: str, job_id: str) -> tuple[Job | None, bool]:
        try:
            row = await self._db.one(sql.RETRY, {"id": job_id, "tenant": tenant})
        except psycopg.errors.UniqueViolation:
            row = None  # a twin went live meanwhile: it keeps its place
        if row is not None:
            return job_from_row(row), True
        return await self.get(tenant, job_id), False

    @unavailable
    async def retry_dead(self, tenant: str) -> int:
        for _ in range(3):
            try:
                return len(await self._db.fetchall(sql.RETRY_DEAD, {"tenant": tenant}))
            except psycopg.errors.UniqueViolation:
                continue  # a twin went live meanwhile: look again without it
        raise StoreUnavailable("unique jobs kept going live during the retry; try again")

    @unavailable
    async def purge_dead(self, tenant: str) -> int:
        return len(await self._db.fetchall(sql.PURGE_DEAD, {"tenant": tenant}))

    @unavailable
    async def events(self, tenant: str, job_id: str, after: int = 0,
                     limit: int = 500) -> list[Event]:
        rows = await self._db.fetchall(sql.EVENTS, {"id": job_id, "tenant": tenant, "after": after,
                                              "limit": limit})
        return [Event(seq=seq, job_id=jid, at=at, kind=kind, data=json.loads(data))
                for seq, jid, at, kind, data in rows]

    @unavailable
    async def watch(self, watches: list[Watch], limit: int = 500) -> list[Watched]:
        if not watches:
            return []
        rows = await self._db.fetchall(sql.WATCH, {"watches": watch_params(watches),
                                                   "limit": limit})
        return watched_from_rows(watches, rows)

    @unavailable
    async def check_writable(self) -> None:
        await self._db.fetchall(sql.CHECK_WRITABLE)

    @unavailable
    async def pools(self) -> list[PoolInfo]:
        return [PoolInfo(pid=pid, slots=json.loads(slots), slot_count=slot_count, busy=busy,
                         heartbeat_at=heartbeat_at, admission=json.loads(admission),
                         slot_rows=json.loads(slot_rows), owner=owner)
                for owner, pid, slots, slot_count, busy, heartbeat_at, admission, slot_rows
                in await self._db.fetchall(sql.POOLS)]

    @unavailable
    async def storage(self) -> Storage:
        # The WAL is the whole server's, not this database's: it is not counted here.
        (_, size) = await self._db.one(sql.SERVER)
        return Storage(int(size), 0, "autovacuum")

    @unavailable
    async def schema_version(self) -> SchemaVersion:
        (exists,) = await self._db.one(sql.SCHEMA_TABLE)
        found = (await self._db.one(sql.SCHEMA_FOUND))[0] if exists else None
        return SchemaVersion(found or 0, schema.SCHEMA_VERSION)

    async def checks(self) -> list[Check]:
        try:
            version, size = await self._db.one(sql.SERVER)
            found = (await self.schema_version()).found
            queued, oldest = await self._db.one(sql.QUEUE_LAG) if found else (0, None)
        except (psycopg.Error, StoreUnavailable) as exc:
            return [Check("database", Status.FAIL, f"cannot read the database: {exc}",
                          "check the database setting, the server and its pg_hba.conf")]
        wanted = schema.SCHEMA_VERSION
        checks = [Check("database", Status.OK, f"PostgreSQL {version}, "
                        f"{int(size) / 1024**2:.1f} MiB")]
        if found > wanted:
            checks.append(Check("migrations", Status.FAIL, f"schema {found}, newer than this "
                                f"ScholarSource understands ({wanted})",
                                "upgrade ScholarSource (on every box that shares the database)"))
        elif found == wanted:
            checks.append(Check("migrations", Status.OK, f"schema {found}"))
        else:  # an older schema, or none yet: as with SQLite, serve migrates it
            checks.append(Check("migrations", Status.OK, f"schema {found}; serve migrates it "
                                f"to {wanted}" if found else "no schema yet; serve creates it"))
        lag = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        checks.append(Check("queue lag", Status.OK,
                            f"{queued} job(s) queued; the oldest was submitted {lag:.1f} s ago"
                            if queued else "no job is queued"))
        return checks

    async def backup(self, target: Path, *, force: bool = False) -> BackupResult:
        file = shlex.quote(str(target))
        raise BackupUnsupported(
            "a PostgreSQL store is backed up with PostgreSQL's own tools: "
            f"pg_dump --format=custom --file={file} \"$DATABASE_URL\" with DATABASE_URL set "
            "to the database setting (the dump is consistent while the servers run; use the "
            "server's major version of pg_dump or a newer one). Restore into an empty "
            f"database with pg_restore --no-owner --dbname=\"$DATABASE_URL\" {file}")

    @unavailable
    async def tasks(self) -> dict[str, TaskDefaults]:
        return tasks_from_rows(await self._db.fetchall(sql.TASKS))

    @unavailable
    async def counts(self, tenant: str | None = None) -> dict[str, int]:
        counts = {state.value: 0 for state in JobState}
        rows = await (self._db.fetchall(sql.COUNTS) if tenant is None else
                      self._db.fetchall(sql.TENANT_COUNTS, {"tenant": tenant}))
        counts.update({status: n for status, n in rows})
        return counts

    @unavailable
    async def queue_counts(self, tenant: str | None) -> dict[str, dict[str, int]]:
        queues: dict[str, dict[str, int]] = {}
        which = "" if tenant is None else "tenant = %(tenant)s AND"
        rows = await self._db.fetchall(sql.QUEUE_COUNTS.format(tenant=which), {"tenant": tenant})
        for queue, status, n in rows:
            queues.setdefault(queue, {})[status] = n
        return queues

    @unavailable
    async def finished_history(self, tenant: str, since: float, step: float,
                               buckets: int) -> list[int]:
        counts = [0] * buckets
        for bucket, n in await self._db.fetchall(sql.FINISHED_HISTORY,
                                           {"tenant": tenant, "since": since, "step": step}):
            counts[min(bucket, buckets - 1)] += n
        return counts

    @unavailable
    async def recently_finished(self, tenant: str, since: float,
                                limit: int) -> list[Finished]:
        rows = await self._db.fetchall(sql.RECENTLY_FINISHED,
                                 {"tenant": tenant, "since": since, "limit": limit})
        return [Finished(task, JobState(status), created, started, finished)
                for task, status, created, started, finished in rows]

    # -- the pool's side --------------------------------------------------------------------
    @unavailable
    async def claim(self, owner: str, n: int, lease_seconds: float,
                    refs: list[int] | None = None, gate: Gate = OPEN) -> list[Claim]:
        now = time.time()
        args = {"owner": owner, "lease_until": now + lease_seconds, "now": now, "n": n,
                "lock": sql.CLAIM_LOCK, "refs": None if refs is None else refs[:n],
                **_gate(gate)}
        claim = (sql.CLAIM_REFS if refs is not None
                 else sql.CLAIM_HEADS if self._held(gate) else sql.CLAIM)
        turn, rows = await self._db.atomically([(sql.CLAIM_TURN, args), (claim, args)])
        self._paused_seen = bool(turn[0][-1])
        # Nothing taken by the plain walk: several tenants wait (a turn), or nothing may start.
        if not rows and refs is None and (await self._db.one(sql.CONTESTED))[0]:
            _, rows = await self._db.atomically([(sql.CLAIM_TURN, args),
                                                 (sql.FAIR_CLAIM, args)])
        claims = claims_from_rows(rows)
        if any(claim.has_parents for claim in claims):
            claims = await with_parents(claims, await self._db.fetchall(sql.PARENT_RESULTS, {
                "ids": [claim.id for claim in claims if claim.has_parents]}), self.artifacts_of)
        return claims

    @unavailable
    async def peek(self, n: int, gate: Gate = OPEN) -> list[tuple[int, str]]:
        args = {"n": n, "now": time.time(), **_gate(gate)}
        rows = await self._db.fetchall(sql.PEEK_HEADS if self._held(gate) else sql.PEEK, args)
        if not rows and (await self._db.one(sql.CONTESTED))[0]:
            _, rows = await self._db.atomically([(sql.NO_JIT, None), (sql.FAIR_PEEK, args)])
        return [(ref, task) for ref, task in rows]

    def _held(self, gate: Gate) -> bool:
        """Whether some queue is held back whole: in the gate, or paused at the last claim."""
        return bool(gate.skip) or gate.only is not None or self._paused_seen

    @unavailable
    async def rate_free_at(self) -> float | None:
        at: float | None = (await self._db.one(sql.RATE_FREE_AT, {"now": time.time()}))[0]
        return at

    @unavailable
    async def pause_queue(self, name: str, paused: bool) -> None:
        await self._db.fetchall(sql.PAUSE if paused else sql.RESUME,
                          {"name": name, "now": time.time()})

    @unavailable
    async def paused_queues(self) -> set[str]:
        return {name for (name,) in await self._db.fetchall(sql.PAUSED)}

    @unavailable
    async def queue_stats(self, since: float, tenant: str | None = None) -> list[QueueStats]:
        depths, finishes = ((sql.QUEUE_DEPTHS, sql.QUEUE_FINISHES) if tenant is None
                            else (sql.TENANT_QUEUE_DEPTHS, sql.TENANT_QUEUE_FINISHES))
        args = {"tenant": tenant, "since": since}
        return queue_stats_from_rows(await self._db.fetchall(depths, args),
                                     await self._db.fetchall(finishes, args))

    @unavailable
    async def rates(self, tenant: str | None = None) -> list[RateStats]:
        return [RateStats(task, queue, limit, window, started, queued)
                for task, queue, limit, window, started, queued
                in await self._db.fetchall(sql.RATES if tenant is None else sql.TENANT_RATES,
                                           {"tenant": tenant, "now": time.time()})]

    @unavailable
    async def promote(self) -> float | None:
        await self._db.fetchall(sql.PROMOTE, {"now": time.time()})
        next_due: float | None = (await self._db.one(sql.NEXT_DUE))[0]
        return next_due

    @unavailable
    async def renew(self, owner: str, held: list[tuple[str, int]],
                    lease_seconds: float) -> None:
        if held:
            await self._db.fetchall(sql.RENEW, {
                "until": time.time() + lease_seconds, "owner": owner,
                "ids": [job_id for job_id, _ in held], "tokens": [t for _, t in held]})

    @unavailable
    async def finish(self, outcomes: list[Outcome], max_crashes: int) -> dict[str, JobState]:
        batch = [{"id": o.job_id, "token": o.token, "ending": o.ending.value,
                  "result": o.result_json, "code": o.error_code, "error": o.error,
                  "detail": o.error_detail, "retry_at": o.retry_at, "exit": o.exit,
                  "rss": o.peak_rss, "cpu": o.cpu_time} for o in outcomes]
        args = {"batch": dumps(batch), "now": time.time(), "max_crashes": max_crashes}
        if any(o.artifacts for o in outcomes):
            # Every success's files: the statement keeps those of the jobs it left succeeded.
            done = {o.job_id for o in outcomes if o.ending is Ending.SUCCEEDED}
            query = sql.FINISH_WITH_ARTIFACTS
            args["artifacts"] = dumps(artifact_batch(outcomes, done))
        else:
            query = sql.FINISH
        if not any(o.then is not None for o in outcomes):
            return {job_id: JobState(status)
                    for job_id, status in await self._db.fetchall(query, args)}
        return await asyncio.shield(self._finish_continued(outcomes, query, args))

    async def _finish_continued(self, outcomes: list[Outcome], query: str,
                                args: dict[str, Any]) -> dict[str, JobState]:
        async with self._db.pool.connection() as conn, conn.transaction():
            states = {job_id: JobState(status) for job_id, status in
                      await (await conn.execute(query, clean(args))).fetchall()}
            thens = continuations(outcomes, states)
            await _add_children(conn, sql.CONTINUE_PARENTS, [[s.parent_id] for s in thens],
                                thens)
        return states

    @unavailable
    async def spawn(self, spawns: list[Spawn], policy: QuotaPolicy) -> None:
        await asyncio.shield(self._spawn(spawns, policy))

    async def _spawn(self, spawns: list[Spawn], policy: QuotaPolicy) -> None:
        async with self._db.pool.connection() as conn, conn.transaction():
            await _add_children(conn, sql.SPAWN_PARENTS,
                                [[s.parent_id, s.token] for s in spawns], spawns, policy)

    @unavailable
    async def artifacts_of(self, job_ids: list[str]) -> dict[str, list[Artifact]]:
        return artifacts_from_rows(await self._db.fetchall(sql.ARTIFACTS_OF, {"ids": job_ids}))

    @unavailable
    async def artifact_bytes(self) -> int:
        return int((await self._db.one(sql.ARTIFACT_BYTES))[0])

    @unavailable
    async def kept_attempts(self, job_ids: list[str]) -> dict[str, set[int]]:
        kept: dict[str, set[int]] = {}
        for job_id, attempt in await self._db.fetchall(sql.KEPT_ATTEMPTS, {"ids": job_ids}):
            kept.setdefault(job_id, set()).add(attempt)
        return kept

    @unavailable
    async def graves(self, limit: int) -> list[str]:
        return [job_id for (job_id,) in await self._db.fetchall(sql.GRAVES, {"limit": limit})]

    @unavailable
    async def bury(self, job_ids: list[str]) -> None:
        await self._db.fetchall(sql.BURY, {"ids": job_ids})

    @unavailable
    async def note(self, notes: list[Note]) -> None:
        batch = [{"id": n.job_id, "token": n.token, "kind": n.kind, "data": n.data}
                 for n in notes]
        # Only the newest progress of each attempt matters for the job row.
        latest = {(n.job_id, n.token): n for n in notes if n.kind == "progress"}
        progress = [{"id": n.job_id, "token": n.token, "data": n.data}
                    for n in latest.values()]
        statements: list[tuple[str, Any]] = [
            (sql.ADD_EVENTS, {"batch": dumps(batch), "now": time.time()})]
        if progress:
            statements.append((sql.PROGRESS, {"batch": dumps(progress)}))
        await self._db.atomically(statements)

    @unavailable
    async def cancel_requested(self, owner: str) -> list[tuple[str, int]]:
        return [(job_id, token) for job_id, token in
                await self._db.fetchall(sql.CANCEL_REQUESTS, {"owner": owner})]

    @unavailable
    async def requeue(self, job_ids_tokens: Sequence[tuple[str, int]], cause: str) -> int:
        batch = [{"id": job_id, "token": token} for job_id, token in job_ids_tokens]
        return len(await self._db.fetchall(sql.REQUEUE, {
            "batch": dumps(batch), "cause": cause, "code": ErrorCode.INTERRUPTED.value,
            "now": time.time()}))

    @unavailable
    async def recover(self, owner: str, *, max_crashes: int, box: str | None = None,
                      culprit: tuple[str, int] | None = None) -> int:
        now = time.time()
        if box is not None:
            await self._db.fetchall(sql.FORGET_POOLS, {"owner": owner, "box": box,
                                                       "before": now - POOL_FORGET_SECONDS})
            query, code = sql.RECOVER_BOX, ErrorCode.POOL_DIED
            cause = (ErrorCode.INTERRUPTED.explain("the pool process died") if culprit is None
                     else code.explain("the pool process died while handling this job"))
        else:
            query, code = sql.RECOVER_EXPIRED, ErrorCode.LEASE_EXPIRED
            cause = ErrorCode.INTERRUPTED.explain("its lease expired (the pool stopped "
                                                  "renewing it)")
            culprit = None
        job_id, token = culprit or (None, None)
        rows = await self._db.fetchall(query, {
            "owner": owner, "box": box, "now": now, "cause": cause, "code": code.value,
            "max_crashes": max_crashes, "culprit": job_id, "culprit_token": token,
            "spared": spared_cause(box is None)})
        return len(rows)

    @unavailable
    async def publish_tasks(self, tasks: list[TaskDefaults]) -> None:
        rows = dumps([{
            "name": t.name, "queue": t.queue, "timeout": t.timeout,
            "max_attempts": t.max_attempts, "memory": t.memory, "memory_limit": t.memory_limit,
            "backoff_base": t.backoff_base, "backoff_max": t.backoff_max,
            "params": None if t.params is None else json.dumps(t.params),
            "cache_ttl": t.cache_ttl, "unique_job": t.unique, "rate_limit": t.rate_limit,
            "rate_window": t.rate_window, "concurrency_limit": t.concurrency_limit,
        } for t in tasks])
        await self._db.atomically([(sql.PUBLISH_TURN, {"lock": sql.PUBLISH_LOCK}),
                                   (sql.CLEAR_TASKS, None), (sql.ADD_TASKS, {"tasks": rows})])

    @unavailable
    async def heartbeat(self, info: PoolInfo) -> None:
        await self._db.fetchall(sql.HEARTBEAT, {
            "owner": info.owner, "pid": info.pid, "slots": dumps(info.slots),
            "slot_count": info.slot_count, "busy": info.busy, "at": info.heartbeat_at,
            "admission": dumps(info.admission), "slot_rows": dumps(info.slot_rows)})

    # -- schedules --------------------------------------------------------------------------
    @unavailable
    async def schedule_states(self, tenant: str, names: list[str]) -> dict[str, ScheduleState]:
        rows = await self._db.fetchall(sql.SCHEDULE_STATES, {"names": names, "tenant": tenant})
        return schedule_states_from_rows(rows)

    @unavailable
    async def fire(self, new: NewJob | None, name: str, fire_time: float) -> Job | None:
        jobs = [] if new is None else new_jobs([new])
        statements: list[tuple[str, Any]] = [(sql.FIRE_CURSOR, {"name": name,
                                                                "at": fire_time})]
        if new is not None:
            statements.insert(0, (sql.FIRE, {"rows": _rows([new], jobs), "name": name}))
        inserted = (await self._db.atomically(statements))[0]
        return jobs[0] if new is not None and inserted else None

    @unavailable
    async def set_paused(self, name: str, paused: bool, now: float) -> None:
        await self._db.fetchall(sql.SET_PAUSED, {"name": name, "paused": paused, "now": now})

    # -- retention --------------------------------------------------------------------------
    @unavailable
    async def prune(self, state: JobState, before: float, limit: int) -> int:
        return len(await self._db.fetchall(sql.PRUNE, {"state": state.value, "before": before,
                                                 "limit": limit}))

    @unavailable
    async def count_expired(self, state: JobState, before: float) -> int:
        n: int = (await self._db.one(sql.COUNT_EXPIRED, {"state": state.value,
                                                      "before": before}))[0]
        return n

    @unavailable
    async def compact(self, max_pages: int) -> bool:
        # PostgreSQL reuses what VACUUM frees in place; there is nothing to hand back in
        # steps, so one VACUUM (which takes no lock that blocks claims) is the whole job.
        await self._db.fetchall(sql.COMPACT)
        return False

    @unavailable
    async def vacuum(self) -> None:
        await self._db.fetchall(sql.VACUUM)

    # -- API keys and dashboard sessions ----------------------------------------------------
    @unavailable
    async def create_key(self, key: ApiKey) -> None:
        await self._db.fetchall(sql.CREATE_KEY, {
            "id": key.id, "tenant": key.tenant, "role": key.role, "name": key.name,
            "rate": key.rate, "created_at": key.created_at, "revoked_at": key.revoked_at,
            "digest": key.digest})

    @unavailable
    async def list_keys(self) -> list[ApiKey]:
        return [key_from_row(row) for row in await self._db.fetchall(sql.LIST_KEYS)]

    @unavailable
    async def find_key(self, key_id: str) -> ApiKey | None:
        row = await self._db.one(sql.FIND_KEY, {"id": key_id})
        return None if row is None else key_from_row(row)

    @unavailable
    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        row = await self._db.one(sql.REVOKE_KEY, {"id": key_id, "now": now})
        return None if row is None else key_from_row(row)

    @unavailable
    async def create_session(self, token_digest: str, key_id: str, expires_at: float,
                             now: float) -> None:
        await self._db.fetchall(sql.CREATE_SESSION, {"digest": token_digest, "key_id": key_id,
                                                     "expires_at": expires_at, "now": now})

    @unavailable
    async def find_session(self, token_digest: str, now: float) -> ApiKey | None:
        row = await self._db.one(sql.FIND_SESSION, {"digest": token_digest, "now": now})
        return None if row is None else key_from_row(row)

    @unavailable
    async def end_session(self, token_digest: str) -> None:
        await self._db.fetchall(sql.END_SESSION, {"digest": token_digest})
