"""The PostgreSQL schema as numbered migrations, recorded in `schema_version`.

V1 is the SQLite schema as its V12 left it, in PostgreSQL's types: times stay epoch seconds
(double precision) so both stores hand the same numbers to the API, params and results stay
JSON text as stored (the slot decodes them), history and event data are jsonb. Migrations run
under a transaction-scoped advisory lock, so two boxes that start at once apply each one once.
"""

from __future__ import annotations

import psycopg

from scholarsource.errors import StoreError
from scholarsource.store.base import LIVE_STATES

# Any constant of our own: the key of the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x5C401A25
# V1's live states, as they were then (a migration never changes: _V6 recreates the
# index over LIVE_STATES).
_V1_LIVE = "'scheduled', 'queued', 'running', 'retrying'"
_LIVE = ", ".join(f"'{state}'" for state in LIVE_STATES)

# The claim reads `jobs_claim`, a partial index of queued rows in the claim's ORDER BY, so a
# claim is an index walk (FOR UPDATE SKIP LOCKED) whatever the size of the table. The other
# indexes are the SQLite store's, for the same queries (see store/schema.py for each why).
_V1 = f"""
CREATE TABLE jobs (
    seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                text NOT NULL UNIQUE,
    tenant            text NOT NULL,
    task              text NOT NULL,
    queue             text NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    status            text NOT NULL,
    params            text NOT NULL,
    result            text,
    error             text,
    error_detail      text,
    error_code        text,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 1,
    failures          integer NOT NULL DEFAULT 0,
    crashes           integer NOT NULL DEFAULT 0,
    timeout           double precision,
    memory_limit      bigint,
    backoff_base      double precision NOT NULL DEFAULT 1.0,
    backoff_max       double precision NOT NULL DEFAULT 300.0,
    progress          double precision,
    progress_message  text,
    cancel_requested  boolean NOT NULL DEFAULT false,
    token             bigint,
    owner             text,
    lease_until       double precision,
    created_at        double precision NOT NULL,
    started_at        double precision,
    finished_at       double precision,
    run_at            double precision,
    peak_rss          bigint,
    cpu_time          double precision,
    history           jsonb NOT NULL DEFAULT '[]',
    idempotency_key   text,
    fingerprint       text,
    cache_ttl         double precision,
    bypass_cache      boolean NOT NULL DEFAULT false,
    unique_job        boolean NOT NULL DEFAULT false,
    schedule          text,
    scheduled_for     double precision,
    triggered         boolean NOT NULL DEFAULT false,
    concurrency_key   text,
    concurrency_limit integer
);
CREATE INDEX jobs_claim ON jobs (priority DESC, seq) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (owner, lease_until) WHERE status = 'running';
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE status = 'running';
CREATE INDEX jobs_tenant ON jobs (tenant, seq);
CREATE INDEX jobs_tenant_status ON jobs (tenant, status, seq);
CREATE INDEX jobs_tenant_task ON jobs (tenant, task, seq);
CREATE INDEX jobs_tenant_queue ON jobs (tenant, queue, seq);
CREATE INDEX jobs_tenant_schedule ON jobs (tenant, schedule, seq) WHERE schedule IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE run_at IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (tenant, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_expiry ON jobs (status, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_dead ON jobs (queue) WHERE status = 'dead';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_cached ON jobs (tenant, fingerprint, finished_at)
    WHERE status = 'succeeded' AND fingerprint IS NOT NULL;
CREATE UNIQUE INDEX jobs_unique_live ON jobs (tenant, fingerprint)
    WHERE unique_job AND status IN ({_V1_LIVE});
CREATE UNIQUE INDEX jobs_fire ON jobs (schedule, scheduled_for)
    WHERE schedule IS NOT NULL AND NOT triggered;
CREATE INDEX jobs_keys ON jobs (tenant, concurrency_key, status, priority DESC, seq)
    WHERE concurrency_key IS NOT NULL;
-- A key's first queued job (the only one of its key a claim may take), and whether any
-- keyed job waits at all (claims take turns only while one does: sql.CLAIM_TURN).
CREATE INDEX jobs_keyed_queued ON jobs (tenant, concurrency_key, priority DESC, seq)
    WHERE concurrency_key IS NOT NULL AND status = 'queued';

-- A purged or pruned job takes its history with it, in the same statement.
CREATE TABLE job_events (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at     double precision NOT NULL,
    kind   text NOT NULL,
    data   jsonb NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

-- Every state change is recorded by the database itself, in the same transaction.
CREATE FUNCTION jobs_state_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, at, kind, data)
    VALUES (NEW.id, extract(epoch FROM clock_timestamp()), 'state',
            jsonb_build_object('status', NEW.status, 'attempt', NEW.attempts,
                               'error', NEW.error, 'error_code', NEW.error_code,
                               'run_at', NEW.run_at));
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_state_event AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status) EXECUTE FUNCTION jobs_state_event();

CREATE TABLE tasks (
    name              text PRIMARY KEY,
    queue             text NOT NULL,
    timeout           double precision,
    max_attempts      integer,
    memory            bigint,
    memory_limit      bigint,
    backoff_base      double precision,
    backoff_max       double precision,
    params            text,
    cache_ttl         double precision,
    unique_job        boolean NOT NULL DEFAULT false,
    rate_limit        integer,
    rate_window       double precision,
    concurrency_limit integer
);

-- One row per pool, keyed by its owner id (host/box/boot: store/owner.py).
CREATE TABLE pools (
    owner        text PRIMARY KEY,
    pid          integer NOT NULL,
    slots        jsonb NOT NULL,
    slot_count   integer NOT NULL,
    busy         integer NOT NULL,
    heartbeat_at double precision NOT NULL,
    admission    jsonb NOT NULL DEFAULT '{{}}',
    slot_rows    jsonb NOT NULL DEFAULT '[]'
);

CREATE TABLE schedules (
    name     text PRIMARY KEY,
    paused   boolean NOT NULL DEFAULT false,
    "cursor" double precision NOT NULL
);

CREATE TABLE queues (
    name      text PRIMARY KEY,
    paused    boolean NOT NULL DEFAULT false,
    paused_at double precision
);

-- The start times of a rate-limited task's jobs inside its window (an exact sliding window
-- kept in the store, so it holds across boxes), written in the claim's own statement.
CREATE TABLE rate_starts (task text NOT NULL, at double precision NOT NULL);
CREATE INDEX rate_starts_task ON rate_starts (task, at);
CREATE FUNCTION jobs_rate_start() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rate_starts WHERE task = NEW.task
        AND at <= NEW.started_at - (SELECT rate_window FROM tasks WHERE name = NEW.task);
    INSERT INTO rate_starts (task, at)
        SELECT NEW.task, NEW.started_at FROM tasks
        WHERE name = NEW.task AND rate_limit IS NOT NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_rate_start AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status = 'running' AND OLD.status = 'queued')
    EXECUTE FUNCTION jobs_rate_start();
"""

# Quotas (issue 13; the SQLite store's _V14). The count of non-final jobs per tenant is
# kept by statement-level triggers that add up each statement's rows per tenant and apply
# them in tenant order, so concurrent statements lock the counter rows in one order.
_FINAL = "('succeeded', 'dead', 'cancelled')"
_V2 = f"""
CREATE TABLE quota_buckets (
    name   text PRIMARY KEY,
    tokens double precision NOT NULL,
    at     double precision NOT NULL
);
CREATE TABLE tenant_limits (
    tenant      text PRIMARY KEY,
    rate_limit  integer,
    rate_window double precision,
    max_queued  bigint,
    weight      integer
);
CREATE TABLE tenant_live (tenant text PRIMARY KEY, live bigint NOT NULL);
INSERT INTO tenant_live SELECT tenant, count(*) FROM jobs
    WHERE status NOT IN {_FINAL} GROUP BY tenant;
CREATE FUNCTION jobs_live_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tenant_live (tenant, live)
            SELECT tenant, count(*) FROM new_rows WHERE status NOT IN {_FINAL}
            GROUP BY tenant ORDER BY tenant
            ON CONFLICT (tenant) DO UPDATE SET live = tenant_live.live + excluded.live;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO tenant_live (tenant, live)
            SELECT tenant, -count(*) FROM old_rows WHERE status NOT IN {_FINAL}
            GROUP BY tenant ORDER BY tenant
            ON CONFLICT (tenant) DO UPDATE SET live = tenant_live.live + excluded.live;
    ELSE
        INSERT INTO tenant_live (tenant, live)
            SELECT n.tenant, sum(CASE WHEN n.status IN {_FINAL} THEN -1 ELSE 1 END)
            FROM new_rows n JOIN old_rows o ON o.seq = n.seq
            WHERE (o.status IN {_FINAL}) <> (n.status IN {_FINAL})
            GROUP BY n.tenant ORDER BY n.tenant
            ON CONFLICT (tenant) DO UPDATE SET live = tenant_live.live + excluded.live;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_live_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_live_count();
CREATE TRIGGER jobs_live_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_live_count();
CREATE TRIGGER jobs_live_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_live_count();
"""

# API keys and dashboard sessions, as in the SQLite store's _V15.
_V3 = """
CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    tenant     text NOT NULL,
    role       text NOT NULL,
    name       text NOT NULL DEFAULT '',
    rate       text,
    digest     text NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision
);
CREATE TABLE sessions (
    digest     text PRIMARY KEY,
    key_id     text NOT NULL REFERENCES api_keys (id),
    expires_at double precision NOT NULL
);
CREATE INDEX sessions_key ON sessions (key_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
"""


# Fair slots among tenants (the why of each: store/schema.py, _V16).
_V4 = """
CREATE INDEX jobs_fair ON jobs (tenant, priority DESC, seq) WHERE status = 'queued';
CREATE TABLE fair_shares (
    tenant text PRIMARY KEY,
    pass   double precision NOT NULL,
    start  double precision NOT NULL
);
CREATE INDEX fair_shares_start ON fair_shares (start);
"""

# Artifacts (the why of each: store/schema.py, _V17). A deleted job's rows go by
# the foreign key's cascade, which fires the row trigger that counts and records graves.
_V5 = """
CREATE TABLE artifacts (
    job_id       text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name         text NOT NULL,
    attempt      integer NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    content_type text NOT NULL,
    path         text NOT NULL,
    PRIMARY KEY (job_id, name)
);
CREATE TABLE artifact_usage (one integer PRIMARY KEY CHECK (one = 1), bytes bigint NOT NULL);
CREATE TABLE artifact_graves (job_id text PRIMARY KEY);
CREATE FUNCTION artifacts_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO artifact_usage VALUES (1, NEW.size)
            ON CONFLICT (one) DO UPDATE SET bytes = artifact_usage.bytes + excluded.bytes;
    ELSE
        UPDATE artifact_usage SET bytes = bytes - OLD.size;
        INSERT INTO artifact_graves VALUES (OLD.job_id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER artifacts_count AFTER INSERT OR DELETE ON artifacts FOR EACH ROW
    EXECUTE FUNCTION artifacts_count();
"""

# Dependencies between jobs (the why of each: store/schema.py, _V6). PostgreSQL allows
# no subquery in a trigger's WHEN, so the function reads the edges itself; its update of a
# child fires the trigger again, which cascades a failure down the tree. Two parents of one
# child finishing at once serialise on the child's row. Its plans must not follow skewed
# statistics: with one parent holding 100,000 waiting children, the cached generic plan of a
# set-based UPDATE (EXPLAIN, after ANALYZE) scanned job_deps and every waiting job for any
# parent. So each call plans the edge lookup for its own parent (force_custom_plan: a probe
# of job_deps' primary key for a parent with few children), and each child is updated by
# its id, a unique-index probe whatever the statistics.
_V6 = f"""
ALTER TABLE jobs ADD COLUMN depends_on jsonb;
ALTER TABLE jobs ADD COLUMN on_parent_failure text NOT NULL DEFAULT 'cancel';
ALTER TABLE jobs ADD COLUMN waiting_for integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN depth integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN workflow_id text;
ALTER TABLE jobs ADD COLUMN step text;
ALTER TABLE jobs ADD COLUMN parent_id text;
CREATE INDEX jobs_workflow ON jobs (tenant, workflow_id, seq) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_waiting ON jobs (queue) WHERE status = 'waiting';
CREATE TABLE job_deps (
    parent text NOT NULL,
    child  text NOT NULL,
    PRIMARY KEY (parent, child)
);
DROP INDEX jobs_unique_live;
CREATE UNIQUE INDEX jobs_unique_live ON jobs (tenant, fingerprint)
    WHERE unique_job AND status IN ({_LIVE});
CREATE FUNCTION jobs_release() RETURNS trigger LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    kid text;
    done boolean := NEW.status = 'succeeded';
BEGIN
    FOR kid IN SELECT child FROM job_deps WHERE parent = NEW.id LOOP
        UPDATE jobs SET
            waiting_for = jobs.waiting_for - 1,
            status = CASE WHEN done OR jobs.on_parent_failure = 'run'
                          THEN CASE WHEN jobs.waiting_for <= 1 THEN 'queued' ELSE 'waiting' END
                          ELSE 'cancelled' END,
            error_code = CASE WHEN done OR jobs.on_parent_failure = 'run'
                              THEN jobs.error_code ELSE 'parent_failed' END,
            error = CASE WHEN done OR jobs.on_parent_failure = 'run' THEN jobs.error
                         ELSE 'parent_failed: its parent ' || NEW.id || ' ended ' || NEW.status
                         END,
            finished_at = CASE WHEN done OR jobs.on_parent_failure = 'run'
                               THEN jobs.finished_at
                               ELSE extract(epoch FROM clock_timestamp()) END
        WHERE jobs.id = kid AND jobs.status = 'waiting';
    END LOOP;
    DELETE FROM job_deps WHERE parent = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_release AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IN {_FINAL} AND OLD.status NOT IN {_FINAL})
    EXECUTE FUNCTION jobs_release();
"""

# A claim reads the clock before it waits for its turn, so the claims of two boxes can
# commit out of clock order. Pruning a start by the newest claim's clock then removed a
# start that a claim still waiting with an older clock had to count: six starts of a
# "5/s" task fell within 0.996 s (CI, two boxes). Every reader filters by its own window, so
# a start can stay five minutes longer than any claim waits for its turn, harmlessly.
_V7 = """
CREATE OR REPLACE FUNCTION jobs_rate_start() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rate_starts WHERE task = NEW.task
        AND at <= NEW.started_at - 300 - (SELECT rate_window FROM tasks WHERE name = NEW.task);
    INSERT INTO rate_starts (task, at)
        SELECT NEW.task, NEW.started_at FROM tasks
        WHERE name = NEW.task AND rate_limit IS NOT NULL;
    RETURN NULL;
END $$;
"""

# Queued jobs by queue, each queue in claim order: while some queue is held back whole
# (paused, at its cap, reserved for others), the lone tenant's claim takes each open queue's
# first jobs and passes over a held queue without reading its jobs (sql.HEADS_ORDER).
_V8 = """
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (queue, priority DESC, seq)
    WHERE status = 'queued';
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(url: str) -> int:
    """Create or upgrade the database at `url` to SCHEMA_VERSION; returns the version. Safe
    when several boxes run it at once: the advisory lock makes the others wait, then find
    nothing left to do."""
    with psycopg.connect(url, prepare_threshold=None) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(version integer PRIMARY KEY, applied_at double precision NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        version = 0 if row is None or row[0] is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"database has schema {version}, newer than this ScholarSource "
                             f"understands ({SCHEMA_VERSION}); upgrade it")
        for number in range(version, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[number])
            conn.execute("INSERT INTO schema_version VALUES (%s, extract(epoch FROM now()))",
                         (number + 1,))
    return SCHEMA_VERSION
