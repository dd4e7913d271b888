"""The SQLite schema as numbered migrations, applied in place at start (PRAGMA user_version).

Runs in the Gunicorn master before any process forks, on a connection it closes again, so no
connection ever crosses a fork.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from scholarsource.errors import StoreError

log = logging.getLogger("scholarsource.store")

# The claim reads `jobs_claim`, a partial index that holds queued rows only and matches the
# claim's ORDER BY, so a claim is an index walk whatever the size of the table (no temp B-tree).
_V1 = """
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,      -- internal order; never shown to clients
    id               TEXT NOT NULL UNIQUE,     -- random, unguessable public id
    tenant           TEXT NOT NULL,
    task             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL,
    params           TEXT NOT NULL,            -- JSON
    result           TEXT,                     -- JSON
    error            TEXT,                     -- clean message for clients
    error_detail     TEXT,                     -- traceback, server-side only
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    timeout          REAL,
    progress         REAL,
    progress_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    token            INTEGER,                  -- fences one attempt
    owner            TEXT,                     -- pool instance holding the lease
    lease_until      REAL,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL
);
CREATE INDEX jobs_claim ON jobs (priority DESC, seq) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (owner, lease_until) WHERE status = 'running';
CREATE INDEX jobs_tenant ON jobs (tenant, seq);
CREATE INDEX jobs_tenant_status ON jobs (tenant, status, seq);

CREATE TABLE job_events (
    seq    INTEGER PRIMARY KEY,                -- the SSE event id
    job_id TEXT NOT NULL,
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,                      -- state | progress | log
    data   TEXT NOT NULL                       -- JSON
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

-- Every state change is recorded by the database itself, in the same transaction, so no
-- code path can change a status without leaving its event.
CREATE TRIGGER jobs_state_event AFTER UPDATE OF status ON jobs
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO job_events (job_id, at, kind, data)
    VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0, 'state',
            json_object('status', NEW.status, 'attempt', NEW.attempts, 'error', NEW.error));
END;

-- The task registry as the pool last loaded it: API workers validate submits against it
-- without importing task code (which may be heavy) themselves.
CREATE TABLE tasks (
    name         TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    timeout      REAL,
    max_attempts INTEGER
);

CREATE TABLE pool (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    pid          INTEGER NOT NULL,
    slots        TEXT NOT NULL,                -- JSON list of slot pids
    slot_count   INTEGER NOT NULL,
    busy         INTEGER NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""

# Records each state change as an event (V2 on). A migration that renames states in place
# drops it around the rename, so the rename itself leaves no events.
_STATE_EVENT_TRIGGER = """
CREATE TRIGGER jobs_state_event AFTER UPDATE OF status ON jobs
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO job_events (job_id, at, kind, data)
    VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0, 'state',
            json_object('status', NEW.status, 'attempt', NEW.attempts, 'error', NEW.error,
                        'error_code', NEW.error_code, 'run_at', NEW.run_at));
END;
"""

# Retries, dead letters and resource figures. `failed` stops being final: it now means "waiting
# for the next attempt at run_at", so V1's failed jobs (out of attempts) become dead. Jobs
# waiting on a backoff stay out of `jobs_claim`, as the claim's ordering requires; their own
# partial index finds the ones that are due.
_V2 = f"""
ALTER TABLE jobs ADD COLUMN error_code TEXT;
ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN run_at REAL;
ALTER TABLE jobs ADD COLUMN memory_limit INTEGER;
ALTER TABLE jobs ADD COLUMN backoff_base REAL NOT NULL DEFAULT 1.0;
ALTER TABLE jobs ADD COLUMN backoff_max REAL NOT NULL DEFAULT 300.0;
ALTER TABLE jobs ADD COLUMN peak_rss INTEGER;
ALTER TABLE jobs ADD COLUMN history TEXT NOT NULL DEFAULT '[]';  -- JSON, one entry per attempt
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'failed';

DROP TRIGGER jobs_state_event;
UPDATE jobs SET status = 'dead' WHERE status = 'failed';
{_STATE_EVENT_TRIGGER}
-- Purging a job purges its history with it, in the same statement.
CREATE TRIGGER jobs_purge_events AFTER DELETE ON jobs
BEGIN
    DELETE FROM job_events WHERE job_id = OLD.id;
END;

ALTER TABLE tasks ADD COLUMN memory INTEGER;
ALTER TABLE tasks ADD COLUMN memory_limit INTEGER;
ALTER TABLE tasks ADD COLUMN backoff_base REAL;
ALTER TABLE tasks ADD COLUMN backoff_max REAL;

ALTER TABLE pool ADD COLUMN admission TEXT NOT NULL DEFAULT '{{}}';  -- JSON: why jobs wait
"""

# Resource figures and what /api/stats and /metrics read: CPU time per attempt, an index on
# a tenant's finish times so that its throughput over the last minutes is an index-only range
# count, and one over the dead letters so that counting them reads only them.
_V3 = """
ALTER TABLE jobs ADD COLUMN cpu_time REAL;
CREATE INDEX jobs_finished ON jobs (tenant, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_dead ON jobs (queue) WHERE status = 'dead';
"""

# Idempotent submits: a client that sends the same Idempotency-Key twice (a retry after a
# dropped connection) gets the first job back instead of a second one.
_V4 = """
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""

# What each task's params may be (a JSON Schema from its signature), so API workers refuse a
# submit that could only fail at run time, still without importing task code.
_V5 = """
ALTER TABLE tasks ADD COLUMN params TEXT;
"""

# A `?task=` or `?queue=` page of GET /api/jobs reads its own index, which ends in seq as the
# page's order does: it stops after `limit` rows, however rare the value, where it scanned the
# tenant's whole history before. Neither column changes after a submit, so claims and
# finishes never touch these (an index of status with task or queue would be rewritten at
# every state change: ~25% more CPU per claim + finish, bench/filters.py).
_V6 = """
CREATE INDEX jobs_tenant_task ON jobs (tenant, task, seq);
CREATE INDEX jobs_tenant_queue ON jobs (tenant, queue, seq);
"""

# The dashboard's slots view: what each slot runs, as the pool's heartbeat last said.
_V7 = """
ALTER TABLE pool ADD COLUMN slot_rows TEXT NOT NULL DEFAULT '[]';  -- JSON, one object per slot
"""

# The result cache and unique jobs.
# `fingerprint` hashes (task, canonical params) for jobs that asked for either (plain jobs
# leave it NULL and stay out of both indexes), so each lookup is an index probe at any
# history size. jobs_cached holds the succeeded ones, newest last; jobs_unique_live makes
# the schema itself refuse a second unique job of the same tenant, task and params while
# one is live: a state change out of the live set frees it. The state list must equal
# store.base.LIVE_STATES (a test checks it): a change of those states recreates the index.
_V8 = """
ALTER TABLE jobs ADD COLUMN fingerprint TEXT;
ALTER TABLE jobs ADD COLUMN cache_ttl REAL;
ALTER TABLE jobs ADD COLUMN bypass_cache INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN unique_job INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_cached ON jobs (tenant, fingerprint, finished_at)
    WHERE status = 'succeeded' AND fingerprint IS NOT NULL;
CREATE UNIQUE INDEX jobs_unique_live ON jobs (tenant, fingerprint)
    WHERE unique_job = 1 AND status IN ('queued', 'running', 'failed');

ALTER TABLE tasks ADD COLUMN cache_ttl REAL;
ALTER TABLE tasks ADD COLUMN unique_job INTEGER NOT NULL DEFAULT 0;
"""

# Retention: each final state's jobs in the order they finished, so that the pruner's "the
# oldest N succeeded jobs finished before T" is one index range, whatever else the table
# holds. Partial on finished_at (set only in a final state): a row enters it once, when it
# finishes, and leaves when it is pruned or re-queued; claims never touch it.
_V9 = """
CREATE INDEX jobs_expiry ON jobs (status, finished_at) WHERE finished_at IS NOT NULL;
"""

# Job states a client reads right (issue 11): the state that waits for the next attempt is
# `retrying`, not `failed` (which every client took for final), in rows and in their history.
# Delayed submits wait as `scheduled`. run_at is set only while a job waits (scheduled or
# retrying), so the index of due times holds those rows alone, and its first entry is the
# next due time (promote and the dispatcher's sleep read it); the claim's own index still
# holds queued rows only. A unique job's live twins now include the scheduled and retrying
# ones (store.base.LIVE_STATES).
_V10 = f"""
DROP INDEX jobs_unique_live;
DROP TRIGGER jobs_state_event;
UPDATE jobs SET status = 'retrying' WHERE status = 'failed';
UPDATE job_events SET data = json_set(data, '$.status', 'retrying')
WHERE kind = 'state' AND data ->> 'status' = 'failed';
{_STATE_EVENT_TRIGGER}
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (run_at) WHERE run_at IS NOT NULL;
CREATE UNIQUE INDEX jobs_unique_live ON jobs (tenant, fingerprint)
    WHERE unique_job = 1 AND status IN ('scheduled', 'queued', 'running', 'retrying');
"""

# Periodic jobs. A job a schedule made names it and its fire time; jobs_fire makes a second
# job for the same fire impossible in the schema itself (the fire is one INSERT ... ON
# CONFLICT DO NOTHING), whatever restarts, reloads or racing pools do. A manual trigger is
# marked (`triggered`) and stays out of it. `schedules` keeps what must outlive a pool: the
# pause, and `cursor`, the fire time up to which every fire was handled (fired or skipped),
# written in the same transaction as the fire. jobs_tenant_schedule serves ?schedule=.
_V11 = """
ALTER TABLE jobs ADD COLUMN schedule TEXT;
ALTER TABLE jobs ADD COLUMN scheduled_for REAL;
ALTER TABLE jobs ADD COLUMN triggered INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX jobs_fire ON jobs (schedule, scheduled_for)
    WHERE schedule IS NOT NULL AND triggered = 0;
CREATE INDEX jobs_tenant_schedule ON jobs (tenant, schedule, seq) WHERE schedule IS NOT NULL;

CREATE TABLE schedules (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    cursor REAL NOT NULL
);
"""

# Which queued job may start (pool/policy.py), decided inside the claim:
# - concurrency keys: jobs_keys finds, per (tenant, key), the running ones to count and the
#   first queued one (the only one of its key a claim may take), each an index probe;
# - pauses live in `queues`, so they survive restarts and every process sees them;
# - rate limits: each task's limit is published in `tasks`; `rate_starts` keeps the start
#   times of a limited task's jobs inside its window (a sliding window, exact, and in the
#   store so that it holds across pools), written by a trigger in the claim's own statement.
_V12 = """
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
ALTER TABLE jobs ADD COLUMN concurrency_limit INTEGER;
CREATE INDEX jobs_keys ON jobs (tenant, concurrency_key, status, priority DESC, seq)
    WHERE concurrency_key IS NOT NULL;

CREATE TABLE queues (
    name      TEXT PRIMARY KEY,
    paused    INTEGER NOT NULL DEFAULT 0,
    paused_at REAL
);

ALTER TABLE tasks ADD COLUMN rate_limit INTEGER;     -- at most this many starts ...
ALTER TABLE tasks ADD COLUMN rate_window REAL;       -- ... in any window of these seconds
ALTER TABLE tasks ADD COLUMN concurrency_limit INTEGER;
CREATE TABLE rate_starts (task TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX rate_starts_task ON rate_starts (task, at);
CREATE TRIGGER jobs_rate_start AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status = 'queued'
BEGIN
    DELETE FROM rate_starts WHERE task = NEW.task
        AND at <= NEW.started_at - (SELECT rate_window FROM tasks WHERE name = NEW.task);
    INSERT INTO rate_starts (task, at)
        SELECT NEW.task, NEW.started_at FROM tasks
        WHERE name = NEW.task AND rate_limit IS NOT NULL;
END;
"""

# Pools keyed by owner (store/owner.py: host/box/boot), one row each, instead of the single
# row: several boxes can share one queue, and /api/health and /api/stats show each. Jobs still
# running from before held random owner ids that name no box; the data directory's lock
# proves their pool is dead, so their leases end now and the first sweep re-queues them.
_V13 = """
CREATE TABLE pools (
    owner        TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    slots        TEXT NOT NULL,                -- JSON list of slot pids
    slot_count   INTEGER NOT NULL,
    busy         INTEGER NOT NULL,
    heartbeat_at REAL NOT NULL,
    admission    TEXT NOT NULL DEFAULT '{}',   -- JSON: why jobs wait
    slot_rows    TEXT NOT NULL DEFAULT '[]'    -- JSON, one object per slot
);
DROP TABLE pool;
UPDATE jobs SET lease_until = 0 WHERE status = 'running';
"""

# Quotas (issue 13): token buckets per API key and per tenant, limits set per tenant with
# `scholarsource tenants set`, and each tenant's count of non-final jobs, kept by triggers in
# the transaction of every insert, state change and delete, so a submit checks max_queued
# with one primary-key read instead of counting the tenant's backlog.
_FINAL = "('succeeded', 'dead', 'cancelled')"
_V14 = f"""
CREATE TABLE quota_buckets (
    name   TEXT PRIMARY KEY,                  -- 'tenant:NAME' or 'key:ID'
    tokens REAL NOT NULL,
    at     REAL NOT NULL                      -- when tokens was right (wall clock)
) WITHOUT ROWID;
CREATE TABLE tenant_limits (
    tenant      TEXT PRIMARY KEY,
    rate_limit  INTEGER,                      -- NULL: the config's (each column alike)
    rate_window REAL,
    max_queued  INTEGER,
    weight      INTEGER
) WITHOUT ROWID;
CREATE TABLE tenant_live (tenant TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO tenant_live SELECT tenant, count(*) FROM jobs
    WHERE status NOT IN {_FINAL} GROUP BY tenant;
CREATE TRIGGER jobs_live_insert AFTER INSERT ON jobs WHEN NEW.status NOT IN {_FINAL}
BEGIN
    INSERT INTO tenant_live VALUES (NEW.tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET live = live + 1;
END;
CREATE TRIGGER jobs_live_delete AFTER DELETE ON jobs WHEN OLD.status NOT IN {_FINAL}
BEGIN
    UPDATE tenant_live SET live = live - 1 WHERE tenant = OLD.tenant;
END;
CREATE TRIGGER jobs_live_update AFTER UPDATE OF status ON jobs
WHEN (OLD.status IN {_FINAL}) != (NEW.status IN {_FINAL})
BEGIN
    UPDATE tenant_live SET live = live + iif(NEW.status IN {_FINAL}, -1, 1)
        WHERE tenant = NEW.tenant;
END;
"""

# API keys (only their SHA-256 digest) and the dashboard's sessions (only their token's digest),
# ended with their key. The id is the key's visible part: a check is one primary-key probe.
_V15 = """
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    role       TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    rate       TEXT,
    digest     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE sessions (
    digest     TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES api_keys (id),
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_key ON sessions (key_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
"""


# Fair slots among tenants (pool/policy.py, the claim in store/sqlite.py). jobs_fair holds the
# queued rows by tenant in each tenant's claim order: the claim finds the tenants with queued
# jobs by skipping from one tenant to the next (an index probe each, however many jobs each
# holds) and takes a tenant's first jobs from it. `fair_shares` is stride scheduling's state,
# one row per tenant that ever took a contested turn: `pass`, the virtual time at which its
# next job is due, and `start`, that of its last turn; the largest start is the clock, which a
# tenant back from idle (or from being held back) starts at, so it brings no credit with it.
_V16 = """
CREATE INDEX jobs_fair ON jobs (tenant, priority DESC, seq) WHERE status = 'queued';
CREATE TABLE fair_shares (
    tenant TEXT PRIMARY KEY,
    pass   REAL NOT NULL,
    start  REAL NOT NULL
);
CREATE INDEX fair_shares_start ON fair_shares (start);
"""

# Artifacts (scholarsource/artifacts.py): one row per file of a succeeded job, the attempt
# whose directory holds it. `artifact_usage` keeps their total size (the pool's disk budget
# reads one row, no scan). Deleting a job deletes its rows, and deleting rows records the job
# in `artifact_graves`, in the same transaction: the pruner deletes the files after.
_V17 = """
CREATE TABLE artifacts (
    job_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    path         TEXT NOT NULL,                -- under artifacts_dir
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
CREATE TABLE artifact_usage (one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER NOT NULL);
CREATE TABLE artifact_graves (job_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TRIGGER artifacts_added AFTER INSERT ON artifacts
BEGIN
    INSERT INTO artifact_usage VALUES (1, NEW.size)
        ON CONFLICT (one) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER artifacts_removed AFTER DELETE ON artifacts
BEGIN
    UPDATE artifact_usage SET bytes = bytes - OLD.size;
    INSERT OR IGNORE INTO artifact_graves VALUES (OLD.job_id);
END;
CREATE TRIGGER jobs_purge_artifacts AFTER DELETE ON jobs
BEGIN
    DELETE FROM artifacts WHERE job_id = OLD.id;
END;
"""

# Dependencies between jobs (issue 14). A job that `depends_on` others is `waiting` with
# `waiting_for` = its parents not yet final; `job_deps` holds one row per unresolved edge,
# keyed (parent, child), so a parent's children are one range of its primary key whatever
# else waits. `jobs_release` resolves them in the transaction that makes the parent final,
# on every path there (the pool's finish, a crash that ends dead, a cancel, a bulk cancel,
# a workflow's cancel): a trigger, like jobs_state_event, so no code path can miss one. A
# success counts the parent done (at zero the child is queued); dead or cancelled cancels the
# child with parent_failed naming the parent, unless it asked to run anyway; the child's own
# change fires the trigger again, so a failure cascades down the tree (this needs
# recursive_triggers, set on every connection: SqliteStore.open; `depth`, the longest chain
# of parents above a job, is capped at submit, store/deps.py, so that no cascade nears
# SQLite's 1,000 levels of trigger recursion or PostgreSQL's stack). Each edge goes once
# resolved, so pruning or purging a final job never leaves a child waiting. `waiting` is a
# live state, so jobs_unique_live is recreated over the new set. workflow_id, step and
# parent_id place a job in a workflow (jobs_workflow lists one) or under the task that
# submitted it (jobs_parent). jobs_waiting lets /metrics count the waiting jobs alone, as
# jobs_dead does for the dead letters.
_V18 = f"""
ALTER TABLE jobs ADD COLUMN depends_on TEXT;                 -- JSON list of parent ids
ALTER TABLE jobs ADD COLUMN on_parent_failure TEXT NOT NULL DEFAULT 'cancel';
ALTER TABLE jobs ADD COLUMN waiting_for INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;  -- longest chain of parents
ALTER TABLE jobs ADD COLUMN workflow_id TEXT;
ALTER TABLE jobs ADD COLUMN step TEXT;
ALTER TABLE jobs ADD COLUMN parent_id TEXT;
CREATE INDEX jobs_workflow ON jobs (tenant, workflow_id, seq) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_waiting ON jobs (queue) WHERE status = 'waiting';
CREATE TABLE job_deps (
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
DROP INDEX jobs_unique_live;
CREATE UNIQUE INDEX jobs_unique_live ON jobs (tenant, fingerprint)
    WHERE unique_job = 1 AND status IN ('scheduled', 'waiting', 'queued', 'running', 'retrying');
CREATE TRIGGER jobs_release AFTER UPDATE OF status ON jobs
WHEN NEW.status IN {_FINAL} AND OLD.status NOT IN {_FINAL}
    AND EXISTS (SELECT 1 FROM job_deps WHERE parent = NEW.id)
BEGIN
    UPDATE jobs SET
        waiting_for = waiting_for - 1,
        status = CASE WHEN NEW.status = 'succeeded' OR on_parent_failure = 'run'
                      THEN iif(waiting_for <= 1, 'queued', 'waiting') ELSE 'cancelled' END,
        error_code = CASE WHEN NEW.status = 'succeeded' OR on_parent_failure = 'run'
                          THEN error_code ELSE 'parent_failed' END,
        error = CASE WHEN NEW.status = 'succeeded' OR on_parent_failure = 'run' THEN error
                     ELSE 'parent_failed: its parent ' || NEW.id || ' ended ' || NEW.status END,
        finished_at = CASE WHEN NEW.status = 'succeeded' OR on_parent_failure = 'run'
                           THEN finished_at ELSE (julianday('now') - 2440587.5) * 86400.0 END
    WHERE id IN (SELECT child FROM job_deps WHERE parent = NEW.id) AND status = 'waiting';
    DELETE FROM job_deps WHERE parent = NEW.id;
END;
"""

# jobs_fair serves every claim: while one tenant alone has queued jobs, the claim walks that
# tenant's range of it, in the same order as jobs_claim (priority, then age). So jobs_claim
# goes, and with it one index written by each submit and each claim (measured with
# bench/store_costs.py: 3.4 us less per job of the pool's claim + finish).
_V19 = "DROP INDEX IF EXISTS jobs_claim;"

# Queued jobs by queue, each queue in claim order: while some queue is held back whole
# (paused, at its cap, reserved for others), the lone tenant's claim takes each open queue's
# first jobs and passes over a held queue without reading its jobs (store/sqlite.py,
# _HEADS). No tenant: the path serves a lone tenant, and shorter keys made the claim ~5 %
# faster with a million jobs (bench/policy.py).
_V20 = """
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (queue, priority DESC, seq)
    WHERE status = 'queued';
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13,
                         _V14, _V15, _V16, _V17, _V18, _V19, _V20]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(path: Path) -> int:
    """Create or upgrade the database at `path` to SCHEMA_VERSION; returns the version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        # Freed pages go back to the filesystem (the pruner runs incremental_vacuum). This
        # takes effect only on a new, empty file, and must precede WAL, which writes the
        # header. An existing file keeps its mode: converting it is a VACUUM, which rewrites
        # the whole file under the write lock and needs its size again in free disk, too slow
        # and too risky for a start-up step (systemd's start timeout, a full disk): the
        # operator runs `scholarsource prune --vacuum` once, at a quiet time. Until then
        # pruned pages are reused by new jobs, so the file stops growing but does not shrink.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"database {path} has schema {version}, newer than this "
                             f"ScholarSource understands ({SCHEMA_VERSION}); upgrade it")
        if version == 0:
            log.info("creating the store %s (schema %d)", path, SCHEMA_VERSION)
        elif version < SCHEMA_VERSION:
            log.info("migrating the store %s from schema %d to %d", path, version,
                     SCHEMA_VERSION)
        for number in range(version, SCHEMA_VERSION):
            _step(conn, number)
        if 0 < version < SCHEMA_VERSION:
            log.info("the store is at schema %d", SCHEMA_VERSION)
        return SCHEMA_VERSION
    finally:
        conn.close()


def _step(conn: sqlite3.Connection, number: int) -> None:
    """Apply migration `number` (0-based) as one transaction, unless another process (two
    one-off commands on a new data directory) applied it since this one read the version:
    the version is read again under the write lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] <= number:
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """A migration's statements one by one (a trigger's body holds semicolons of its own:
    SQLite says where a statement is complete)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise StoreError(f"an incomplete statement at the end of a migration: {pending!r}")
    return statements
