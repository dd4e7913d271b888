"""Every PostgreSQL statement the store runs: the SQLite store's statements (store/sqlite.py,
where each one's why is written) in PostgreSQL's dialect.

Batches travel as one jsonb array bound to one parameter, so N results, notes or submits
are one statement and one round trip. Parameters are named (`%(name)s`) and cast where
PostgreSQL could not infer their type.
"""

from __future__ import annotations

from scholarsource.store.base import (
    CARRIED_COLUMNS,
    LIVE_STATES,
    QUEUE_COUNT_STATES,
    WAITING_STATES,
    ErrorCode,
)

# history and event data are jsonb; read back as JSON text, they decode as SQLite's do.
JOB_COLUMNS = ("id, tenant, task, queue, priority, status, params, result, error, error_code, "
               "attempts, max_attempts, failures, crashes, timeout, memory_limit, "
               "backoff_base, backoff_max, progress, progress_message, cancel_requested, "
               "created_at, started_at, finished_at, run_at, peak_rss, cpu_time, "
               "history::text, idempotency_key, cache_ttl, bypass_cache, unique_job, schedule, "
               "scheduled_for, concurrency_key, concurrency_limit, depends_on::text, "
               "on_parent_failure, workflow_id, step, parent_id")
_NEW_COLUMNS = ("id, tenant, task, queue, priority, params, max_attempts, timeout, created_at, "
                "memory_limit, backoff_base, backoff_max, idempotency_key, fingerprint, "
                "cache_ttl, bypass_cache, unique_job, status, run_at, schedule, scheduled_for, "
                "triggered, concurrency_key, concurrency_limit, depends_on, on_parent_failure, "
                "waiting_for, workflow_id, step, parent_id")
# New jobs: each array element is an object keyed by column, typed by the jobs row itself.
_NEW_ROWS = (f"SELECT {', '.join('r.' + c for c in _NEW_COLUMNS.split(', '))} "
             "FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e(v, ord), "
             "jsonb_populate_record(NULL::jobs, e.v) AS r")
SUBMIT = f"INSERT INTO jobs ({_NEW_COLUMNS}) {_NEW_ROWS} ORDER BY e.ord"
# The server-wide max_queued counts every tenant's jobs, so two submits of different tenants
# (or two statements of one: READ COMMITTED reads the count before the other's insert
# commits) could both take the last place. Every insert it admits therefore counts and
# inserts under one advisory lock, SERVER_QUOTA, in a statement that starts once it holds it
# (a fresh snapshot). Far from the cap the lock is shared, so submits still run side by
# side: a holder then misses at most what the other holders insert at that moment, one per
# connection and each at most `room` jobs, and admits only while that much room is left
# (QUOTA_MARGIN). Nearer the cap (or for more jobs at once) it is taken exclusive: exact.
# The connections counted are those to this database now, not max_connections: a server
# allowing 1,000 (common on managed PostgreSQL) made the margin over a million jobs, past
# the default cap, and every submit of every box then took the lock exclusive. Of two
# holders, the one that connected later counts the earlier one, so the margin still
# covers every other holder.
SERVER_QUOTA = "quota"
QUOTA_SHARED = f"SELECT pg_advisory_xact_lock_shared(hashtextextended('{SERVER_QUOTA}', 0))"
QUOTA_MARGIN = ("(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) "
                "* %(room)s")
# Admission's quick path (store/admission.py: Guard), for jobs that only the server-wide
# max_queued concerns: inserted unless the tenants have a rate or max_queued stored or the
# server would come within the margin of its cap (then the quota transaction decides).
SUBMIT_GUARDED = (f"INSERT INTO jobs ({_NEW_COLUMNS}) {_NEW_ROWS} "
                  "WHERE NOT EXISTS (SELECT 1 FROM tenant_limits "
                  "WHERE tenant = ANY(%(tenants)s::text[]) "
                  "AND (rate_limit IS NOT NULL OR max_queued IS NOT NULL)) "
                  "AND (SELECT coalesce(sum(live), 0) FROM tenant_live) + %(total)s "
                  f"+ {QUOTA_MARGIN} <= %(cap)s ORDER BY e.ord RETURNING 1")
BY_KEY = f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = %(tenant)s AND idempotency_key = %(key)s"
_CACHED_WHERE = ("tenant = %(tenant)s AND fingerprint = %(fingerprint)s "
                 "AND status = 'succeeded' AND finished_at >= %(since)s")
CACHED = (f"SELECT {JOB_COLUMNS} FROM jobs WHERE {_CACHED_WHERE} "
          f"ORDER BY finished_at DESC LIMIT 1")
_LIVE = ", ".join(f"'{state}'" for state in LIVE_STATES)
LIVE_TWIN = (f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = %(tenant)s "
             f"AND fingerprint = %(fingerprint)s AND unique_job AND status IN ({_LIVE})")
# One statement checks and inserts: a used key or a live unique twin (their unique indexes)
# makes ON CONFLICT insert nothing; so does, with {cached}, a cached result.
_SUBMIT_ONCE = (f"INSERT INTO jobs ({_NEW_COLUMNS}) {_NEW_ROWS} WHERE true{{cached}} "
                f"ON CONFLICT DO NOTHING RETURNING id")
SUBMIT_ONCE = _SUBMIT_ONCE.format(cached="")
SUBMIT_UNCACHED = _SUBMIT_ONCE.format(
    cached=f" AND NOT EXISTS (SELECT 1 FROM jobs WHERE {_CACHED_WHERE})")
FIRE = _SUBMIT_ONCE.format(
    cached=" AND NOT EXISTS (SELECT 1 FROM schedules WHERE name = %(name)s AND paused)")
FIRE_CURSOR = ('INSERT INTO schedules (name, "cursor") VALUES (%(name)s, %(at)s) '
               'ON CONFLICT (name) DO UPDATE SET "cursor" = '
               'greatest(schedules."cursor", excluded."cursor")')
SCHEDULE_STATES = """
SELECT n.name, s.paused, s."cursor", j.id, j.status, j.scheduled_for
FROM unnest(%(names)s::text[]) WITH ORDINALITY AS n(name, ord)
LEFT JOIN schedules AS s ON s.name = n.name
LEFT JOIN LATERAL (SELECT id, status, scheduled_for FROM jobs WHERE tenant = %(tenant)s
                   AND schedule = n.name ORDER BY seq DESC LIMIT 1) AS j ON true
ORDER BY n.ord
"""
SET_PAUSED = ('INSERT INTO schedules (name, paused, "cursor") VALUES (%(name)s, %(paused)s, '
              '%(now)s) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, "cursor" = '
              'CASE WHEN schedules.paused AND NOT excluded.paused '
              'THEN greatest(schedules."cursor", %(now)s) ELSE schedules."cursor" END')
_ARTIFACTS_OF_JOB = ("(SELECT coalesce(json_agg(json_build_array(name, size, sha256, "
                     "content_type, path) ORDER BY name), '[]')::text FROM artifacts "
                     "WHERE job_id = jobs.id)")
GET = (f"SELECT {JOB_COLUMNS}, {_ARTIFACTS_OF_JOB} FROM jobs "
       f"WHERE id = %(id)s AND tenant = %(tenant)s")
GET_ANY_TENANT = f"SELECT {JOB_COLUMNS}, {_ARTIFACTS_OF_JOB} FROM jobs WHERE id = %(id)s"

# A queued job the claim may take now (the rules of sqlite._CLAIMABLE).
_CLAIMABLE = """q.status = 'queued'
    AND q.queue <> ALL(%(skip)s::text[])
    AND (%(only)s::text[] IS NULL OR q.queue = ANY(%(only)s::text[]))
    AND q.queue NOT IN (SELECT name FROM queues WHERE paused)
    AND q.task NOT IN (SELECT t.name FROM tasks t WHERE t.rate_limit IS NOT NULL
        AND (SELECT count(*) FROM rate_starts r WHERE r.task = t.name
             AND r.at > %(now)s - t.rate_window) >= t.rate_limit)
    AND (q.concurrency_key IS NULL OR (
        q.seq = (SELECT k.seq FROM jobs k WHERE k.tenant = q.tenant
                 AND k.concurrency_key = q.concurrency_key AND k.status = 'queued'
                 ORDER BY k.priority DESC, k.seq LIMIT 1)
        AND (SELECT count(*) FROM jobs k WHERE k.tenant = q.tenant
             AND k.concurrency_key = q.concurrency_key AND k.status = 'running')
            < q.concurrency_limit))"""
# Fair slots (the rules of sqlite.FAIR_PEEK). A lone tenant's claim is the plain walk of
# jobs_claim, which takes nothing while several tenants have queued jobs (`_LONE`: two probes
# of jobs_fair); the store then asks CONTESTED and claims a turn (FAIR_CLAIM), whose pass moves
# on (`_ADVANCE`) in the claim's own statement. Two statements, not one with both halves: a
# claim is planned anew each time (no prepared statements, for PgBouncer), and planning the
# turn's CTEs cost ~10 ms a claim (measured: 214 -> 60 claim+finish/s for a lone tenant).
# A claim locks its tenant's row of fair_shares until it commits, one row only, so claims on
# several boxes never wait on each other in a cycle.
_LONE = ("(SELECT min(tenant) FROM jobs WHERE status = 'queued') "
         "IS NOT DISTINCT FROM (SELECT max(tenant) FROM jobs WHERE status = 'queued')")
CONTESTED = f"SELECT NOT {_LONE}"
# (_LONE is a one-time filter here, checked before the walk; in LIMIT it would hide n from
# the planner, which then joined the claimed rows to a scan of the whole table.)
CLAIM_ORDER = (f"SELECT q.seq FROM jobs q WHERE {_LONE} AND {_CLAIMABLE} "
               f"ORDER BY q.priority DESC, q.seq LIMIT %(n)s FOR UPDATE OF q SKIP LOCKED")
PEEK = (f"SELECT q.seq, q.task FROM jobs q WHERE {_LONE} AND {_CLAIMABLE} "
        f"ORDER BY q.priority DESC, q.seq LIMIT %(n)s")
# While some queue is held back whole (paused, or in the gate), the lone tenant's claim takes
# each open queue's first jobs instead (the rules of sqlite._HEADS): a skip-scan of
# jobs_queued finds the queues (all the lone tenant's), a held one is passed over without
# reading its jobs, and the first n of each other queue are merged in claim order. The
# store picks this statement from its gate and whether its last claim saw a queue paused
# (each statement is planned anew: the plain walk keeps a plan of its own); the picked rows
# are locked after the merge, so a claim locks only what it takes.
_HEADS = f"""WITH RECURSIVE queued(queue) AS (
    (SELECT queue FROM jobs WHERE status = 'queued' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM jobs j WHERE j.status = 'queued' AND j.queue > o.queue
            ORDER BY j.queue LIMIT 1)
    FROM queued o WHERE o.queue IS NOT NULL)
SELECT h.seq, h.task FROM queued o CROSS JOIN LATERAL (
    SELECT q.seq, q.task, q.priority FROM jobs q WHERE q.queue = o.queue AND {_CLAIMABLE}
    ORDER BY q.priority DESC, q.seq LIMIT %(n)s) AS h
WHERE {_LONE} AND o.queue IS NOT NULL AND o.queue <> ALL(%(skip)s::text[])
    AND (%(only)s::text[] IS NULL OR o.queue = ANY(%(only)s::text[]))
    AND o.queue NOT IN (SELECT name FROM queues WHERE paused)
ORDER BY h.priority DESC, h.seq LIMIT %(n)s"""
PEEK_HEADS = _HEADS
HEADS_ORDER = (f"SELECT seq FROM jobs WHERE seq = ANY(ARRAY(SELECT seq FROM ({_HEADS}) AS h)) "
               f"AND status = 'queued' ORDER BY priority DESC, seq FOR UPDATE SKIP LOCKED")
_FAIR = f"""WITH RECURSIVE active(tenant) AS (
    (SELECT tenant FROM jobs WHERE status = 'queued' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant FROM jobs j WHERE j.status = 'queued' AND j.tenant > a.tenant
            ORDER BY j.tenant LIMIT 1)
    FROM active a WHERE a.tenant IS NOT NULL),
heads AS MATERIALIZED (
    SELECT h.tenant, h.seq, h.priority,
           greatest(coalesce(f.pass, 0), (SELECT coalesce(max(start), 0) FROM fair_shares))
               AS pass,
           coalesce((%(weights)s::jsonb ->> h.tenant)::float8, 1) AS weight
    FROM active a CROSS JOIN LATERAL (
        SELECT q.tenant, q.seq, q.priority FROM jobs q WHERE q.tenant = a.tenant
            AND {_CLAIMABLE}
        ORDER BY q.priority DESC, q.seq LIMIT 1) AS h
    LEFT JOIN fair_shares f ON f.tenant = h.tenant),
top AS (SELECT * FROM heads WHERE priority = (SELECT max(priority) FROM heads)),
turn AS MATERIALIZED (
    SELECT t.tenant, t.priority, least(%(n)s, coalesce(greatest(1, floor(
        ((SELECT min(r.pass) FROM top r WHERE r.tenant <> t.tenant) - t.pass) * t.weight
        + 1 - 1e-9)::int), %(n)s)) AS take
    FROM top t ORDER BY t.pass, t.seq LIMIT 1)"""
_TURN_ORDER = (f"SELECT q.seq, q.task FROM jobs q WHERE q.tenant = (SELECT tenant FROM turn) "
               f"AND q.priority = (SELECT priority FROM turn) AND {_CLAIMABLE} "
               f"ORDER BY q.seq LIMIT coalesce((SELECT take FROM turn), 0)")
FAIR_PEEK = f"{_FAIR} {_TURN_ORDER}"
# A contested claim moves each tenant's pass on by its jobs' steps (count / weight), from the
# clock if the tenant was behind it (`excluded` carries the clock as start, and the steps).
_ADVANCE = """advanced AS (
    INSERT INTO fair_shares AS f (tenant, pass, start)
    SELECT c.tenant, v.at + count(*) / coalesce((%(weights)s::jsonb ->> c.tenant)::float8, 1),
           v.at
    FROM claimed c, (SELECT coalesce(max(start), 0) AS at FROM fair_shares) AS v
    WHERE {contested} GROUP BY c.tenant, v.at ORDER BY c.tenant
    ON CONFLICT (tenant) DO UPDATE SET start = greatest(f.pass, excluded.start),
        pass = greatest(f.pass, excluded.start) + (excluded.pass - excluded.start))"""
# Rate limits and concurrency keys count rows that other claims are changing: while either
# is in play, claims take turns (a transaction-scoped lock), so the counts hold across boxes.
# Plain claims never wait for each other: SKIP LOCKED passes over rows another one holds.
#
# JIT compiling pays off for long analytic queries, never for a claim: the planner's
# estimates for the fair turn's CTEs pass jit_above_cost, and compiling then took 3-4 s of
# CPU per claim against 0.4 ms to run it (measured). So the claim's transaction (and a peek's)
# starts with jit off: set_config(..., true) is SET LOCAL, which also holds behind PgBouncer in
# transaction mode.
CLAIM_LOCK = 0x5C401A26
_NO_JIT = "set_config('jit', 'off', true)"
NO_JIT = f"SELECT {_NO_JIT}"
CLAIM_TURN = (f"SELECT {_NO_JIT}, CASE WHEN "
              "EXISTS (SELECT 1 FROM tasks WHERE rate_limit IS NOT NULL) "
              "OR EXISTS (SELECT 1 FROM jobs WHERE concurrency_key IS NOT NULL "
              "AND status = 'queued') THEN pg_advisory_xact_lock(%(lock)s) END, "
              "EXISTS (SELECT 1 FROM queues WHERE paused)")
_CLAIM_SET = ("UPDATE jobs SET status = 'running', attempts = attempts + 1, "
              "token = floor(random() * 9007199254740991)::bigint + 1, owner = %(owner)s, "
              "lease_until = %(lease_until)s, started_at = %(now)s, error = NULL, "
              "error_code = NULL, error_detail = NULL, progress = NULL, "
              "progress_message = NULL, run_at = NULL ")
# UPDATE ... RETURNING has no order: the claims come back in queue order from the outer
# SELECT.
_CLAIMED = "RETURNING " + ", ".join(
    f"jobs.{name}" for name in ("id", "task", "params", "attempts", "max_attempts", "timeout",
                                "token", "failures", "memory_limit", "backoff_base",
                                "backoff_max", "queue", "crashes", "created_at", "tenant",
                                "priority", "seq", "depends_on"))
_CLAIM_OUT = ("SELECT id, task, params, attempts, max_attempts, timeout, token, failures, "
              "memory_limit, backoff_base, backoff_max, queue, crashes, created_at, tenant, "
              "depends_on IS NOT NULL FROM claimed ORDER BY priority DESC, seq")
# The picked rows by seq as an array: an index probe each. Joined to `picked` instead, the
# planner could not know how many a turn takes (its LIMIT is a subquery), guessed many, and
# hashed a scan of every job: 15 ms of a contested claim's 16 with 20,000 queued.
_CLAIMED_FROM = (f"claimed AS ({_CLAIM_SET} WHERE jobs.seq = ANY(ARRAY(SELECT seq FROM picked)) "
                 f"{_CLAIMED})")
CLAIM = f"WITH picked AS ({CLAIM_ORDER}), {_CLAIMED_FROM} {_CLAIM_OUT}"
CLAIM_HEADS = f"WITH picked AS ({HEADS_ORDER}), {_CLAIMED_FROM} {_CLAIM_OUT}"
FAIR_CLAIM = (f"{_FAIR}, picked AS ({_TURN_ORDER} FOR UPDATE OF q SKIP LOCKED), "
              f"{_CLAIMED_FROM}, {_ADVANCE.format(contested='true')} {_CLAIM_OUT}")
# By refs (memory admission's peek), from either walk: the passes move on if contested.
CLAIM_REFS = (f"WITH picked AS (SELECT seq FROM jobs WHERE seq = ANY(%(refs)s::bigint[]) "
              f"AND status = 'queued' FOR UPDATE SKIP LOCKED), {_CLAIMED_FROM}, "
              f"{_ADVANCE.format(contested='NOT ' + _LONE)} {_CLAIM_OUT}")
RATE_FREE_AT = ("SELECT min(r.at + t.rate_window) FROM rate_starts r JOIN tasks t "
                "ON t.name = r.task WHERE t.rate_limit IS NOT NULL "
                "AND r.at > %(now)s - t.rate_window")
PAUSE = ("INSERT INTO queues (name, paused, paused_at) VALUES (%(name)s, true, %(now)s) "
         "ON CONFLICT (name) DO UPDATE SET paused = true, paused_at = excluded.paused_at")
RESUME = "UPDATE queues SET paused = false, paused_at = NULL WHERE name = %(name)s"
PAUSED = "SELECT name FROM queues WHERE paused"
# /api/queues, each in two forms: the whole server's (the operator's view), and one tenant's
# (`tenant = ...` first, so that jobs_tenant_status, jobs_finished and jobs_tenant_task serve it).


def _queue_depths(tenant: str) -> str:
    # run_at: jobs_due finds the scheduled jobs (see the SQLite store's _queue_depths).
    return " UNION ALL ".join(
        f"SELECT queue, status, count(*), min(created_at) FROM jobs WHERE {tenant}{due}"
        f"status = '{state}' GROUP BY queue, status"
        for state, due in (("queued", ""), ("running", ""),
                           ("scheduled", "run_at IS NOT NULL AND ")))


def _queue_finishes(tenant: str) -> str:
    return (f"SELECT queue, count(*) FROM jobs WHERE {tenant}status IN ('succeeded', 'dead', "
            "'cancelled') AND finished_at >= %(since)s GROUP BY queue")


def _rates(tenant: str) -> str:
    # The starts in the window stay every tenant's: the limit is one for the whole server.
    return ("SELECT t.name, t.queue, t.rate_limit, t.rate_window, "
            "(SELECT count(*) FROM rate_starts r WHERE r.task = t.name "
            "AND r.at > %(now)s - t.rate_window), "
            f"(SELECT count(*) FROM jobs j WHERE {tenant}j.status = 'queued' "
            "AND j.task = t.name) FROM tasks t WHERE t.rate_limit IS NOT NULL ORDER BY t.name")


QUEUE_DEPTHS = _queue_depths("")
TENANT_QUEUE_DEPTHS = _queue_depths("tenant = %(tenant)s AND ")
QUEUE_FINISHES = _queue_finishes("")
TENANT_QUEUE_FINISHES = _queue_finishes("tenant = %(tenant)s AND ")
RATES, TENANT_RATES = _rates(""), _rates("j.tenant = %(tenant)s AND ")
# Only the attempts the pool's slots hold, fenced by token (see the SQLite store's RENEW).
RENEW = ("UPDATE jobs SET lease_until = %(until)s "
         "FROM unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS r(id, token) "
         "WHERE jobs.id = r.id AND jobs.token = r.token AND jobs.owner = %(owner)s "
         "AND jobs.status = 'running'")
PROMOTE = ("UPDATE jobs SET status = 'queued', run_at = NULL "
           "WHERE run_at <= %(now)s AND status IN ('scheduled', 'retrying')")
NEXT_DUE = "SELECT min(run_at) FROM jobs WHERE run_at IS NOT NULL"


def _history_entry(outcome: str, code: str, error: str, exit_: str = "NULL::text",
                   rss: str = "NULL::bigint", cpu: str = "NULL::float8") -> str:
    """`history` with one entry appended as an attempt ends."""
    return ("jobs.history || jsonb_build_array(jsonb_build_object("
            "'attempt', jobs.attempts, 'started_at', jobs.started_at, "
            f"'ended_at', %(now)s::float8, 'outcome', {outcome}, 'error_code', {code}, "
            f"'error', {error}, 'exit', {exit_}, 'peak_rss', {rss}, 'cpu_time', {cpu}))")


# A failure runs again at its retry_at until the job has failed max_attempts times or crashed
# max_crashes times; then it is dead. The token fences out stale attempts. (Every SET
# expression reads the row as it was before.)
_FAILURE = "o.ending IN ('failed', 'crashed')"
_EXHAUSTED = ("(jobs.failures + 1 >= jobs.max_attempts "
              "OR (o.ending = 'crashed' AND jobs.crashes + 1 >= %(max_crashes)s))")
FINISH = f"""
UPDATE jobs SET
    status = CASE WHEN NOT {_FAILURE} THEN o.ending WHEN {_EXHAUSTED} THEN 'dead'
                  ELSE 'retrying' END,
    failures = jobs.failures + ({_FAILURE})::int,
    crashes = jobs.crashes + (o.ending = 'crashed')::int,
    run_at = CASE WHEN {_FAILURE} AND NOT {_EXHAUSTED} THEN o.retry_at END,
    finished_at = CASE WHEN {_FAILURE} AND NOT {_EXHAUSTED} THEN NULL ELSE %(now)s::float8 END,
    result = o.result, error = o.error, error_code = o.code, error_detail = o.detail,
    progress = CASE WHEN o.ending = 'succeeded' THEN 1.0 ELSE jobs.progress END,
    peak_rss = coalesce(o.rss, jobs.peak_rss), cpu_time = o.cpu,
    history = {_history_entry("o.ending", "o.code", "o.error", "o.exit", "o.rss", "o.cpu")},
    owner = NULL, lease_until = NULL, token = NULL
FROM jsonb_to_recordset(%(batch)s::jsonb) AS o(id text, token bigint, ending text,
    result text, code text, error text, detail text, retry_at float8, exit text, rss bigint,
    cpu float8)
WHERE jobs.id = o.id AND jobs.token = o.token AND jobs.status = 'running'
RETURNING jobs.id, jobs.status
"""
# FINISH and a success's files in one statement: the files of the jobs it left succeeded.
FINISH_WITH_ARTIFACTS = f"""
WITH finished AS ({FINISH.replace("RETURNING jobs.id, jobs.status",
                                  "RETURNING jobs.id, jobs.status, jobs.attempts")}),
added AS (
    INSERT INTO artifacts (job_id, name, attempt, size, sha256, content_type, path)
    SELECT a.job_id, a.name, f.attempts, a.size, a.sha256, a.content_type, a.path
    FROM jsonb_to_recordset(%(artifacts)s::jsonb) AS a(job_id text, name text, size bigint,
        sha256 text, content_type text, path text)
    JOIN finished AS f ON f.id = a.job_id AND f.status = 'succeeded'
    ON CONFLICT DO NOTHING)
SELECT id, status FROM finished
"""
ARTIFACTS_OF = ("SELECT job_id, name, size, sha256, content_type, path FROM artifacts "
                "WHERE job_id = ANY(%(ids)s::text[]) ORDER BY job_id, name")
ARTIFACT_BYTES = "SELECT coalesce(sum(bytes), 0) FROM artifact_usage"
KEPT_ATTEMPTS = ("SELECT job_id, attempt FROM artifacts WHERE job_id = ANY(%(ids)s::text[]) "
                 "UNION SELECT id, attempts FROM jobs WHERE id = ANY(%(ids)s::text[]) "
                 "AND status = 'running'")
GRAVES = "SELECT job_id FROM artifact_graves LIMIT %(limit)s"
BURY = "DELETE FROM artifact_graves WHERE job_id = ANY(%(ids)s::text[])"
PROGRESS = """
UPDATE jobs SET progress = p.fraction, progress_message = p.message
FROM (SELECT e ->> 'id' AS id, (e ->> 'token')::bigint AS token,
             (e -> 'data' ->> 'fraction')::float8 AS fraction,
             e -> 'data' ->> 'message' AS message
      FROM jsonb_array_elements(%(batch)s::jsonb) AS e) AS p
WHERE jobs.id = p.id AND jobs.token = p.token AND jobs.status = 'running'
"""
ADD_EVENTS = """
INSERT INTO job_events (job_id, at, kind, data)
SELECT n.e ->> 'id', %(now)s, n.e ->> 'kind', n.e -> 'data'
FROM jsonb_array_elements(%(batch)s::jsonb) WITH ORDINALITY AS n(e, ord)
JOIN jobs ON jobs.id = n.e ->> 'id' AND jobs.token = (n.e ->> 'token')::bigint
         AND jobs.status = 'running'
ORDER BY n.ord
"""
LIST_FILTERS = ("status", "task", "queue", "schedule")


def list_sql(filters: set[str], *, paged: bool) -> str:
    """A page of a tenant's jobs, newest first, with equality `filters` (of LIST_FILTERS) and,
    when `paged`, the cursor (seq below it). PostgreSQL's planner picks the index from its
    statistics, so no hint is needed here."""
    where = ["tenant = %(tenant)s", *(f"{name} = %({name})s" for name in LIST_FILTERS
                                      if name in filters)]
    if paged:
        where.append("seq < %(cursor)s")
    return (f"SELECT seq, {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
            f"ORDER BY seq DESC LIMIT %(limit)s")


def every_tenant_sql(filters: set[str], *, paged: bool, search: bool) -> tuple[str, str]:
    """A page of every tenant's jobs (an admin's view), newest first: the newest `scan` jobs
    past the cursor, narrowed to those the `filters` (and, with `search`, the id, task or
    params patterns) match; and the seq just past that window, where the next page starts.
    No per-filter index leads without a tenant, so the window bounds what a page reads."""
    past = "WHERE seq < %(cursor)s " if paged else ""
    match = [f"{name} = %({name})s" for name in LIST_FILTERS if name in filters]
    if search:
        match.append("(id ILIKE %(pattern)s OR task ILIKE %(pattern)s "
                     "OR params ILIKE %(json_pattern)s)")
    where = f"WHERE {' AND '.join(match)} " if match else ""
    return (f"SELECT * FROM (SELECT seq, {JOB_COLUMNS} FROM jobs {past}ORDER BY seq DESC "
            f"LIMIT %(scan)s) AS w {where}ORDER BY seq DESC LIMIT %(page)s",
            f"SELECT seq FROM jobs {past}ORDER BY seq DESC LIMIT 1 OFFSET %(scan)s")


SEARCH = ("SELECT * FROM ({window}) AS w WHERE id ILIKE %(pattern)s OR task ILIKE %(pattern)s "
          "OR params ILIKE %(json_pattern)s ORDER BY seq DESC LIMIT %(page)s")
BEYOND = "SELECT seq FROM ({window}) AS w OFFSET %(scan)s LIMIT 1"

_CANCELLED = f"'{ErrorCode.CANCELLED}'"
CANCEL_QUEUED = (f"UPDATE jobs SET status = 'cancelled', cancel_requested = true, "
                 f"error = {_CANCELLED}, error_code = {_CANCELLED}, run_at = NULL, "
                 f"finished_at = %(now)s WHERE id = %(id)s AND tenant = %(tenant)s "
                 f"AND status IN ('scheduled', 'waiting', 'queued', 'retrying') "
                 f"RETURNING {JOB_COLUMNS}")
CANCEL_RUNNING = (f"UPDATE jobs SET cancel_requested = true WHERE id = %(id)s "
                  f"AND tenant = %(tenant)s AND status = 'running' RETURNING {JOB_COLUMNS}")
_RUNNING = "jobs.status = 'running'"
CANCEL_MATCHING = f"""
UPDATE jobs SET cancel_requested = true,
    status = CASE WHEN {_RUNNING} THEN jobs.status ELSE 'cancelled' END,
    error = CASE WHEN {_RUNNING} THEN jobs.error ELSE {_CANCELLED} END,
    error_code = CASE WHEN {_RUNNING} THEN jobs.error_code ELSE {_CANCELLED} END,
    run_at = CASE WHEN {_RUNNING} THEN jobs.run_at END,
    finished_at = CASE WHEN {_RUNNING} THEN jobs.finished_at ELSE %(now)s END
WHERE tenant = %(tenant)s
    AND status IN ('scheduled', 'waiting', 'queued', 'retrying', 'running') {{filters}}
RETURNING status
"""
# Dependencies (sqlite.LINK_PARENTS and friends, each one's why). FOR SHARE holds each
# parent's state until the edges are committed: a parent's finish waits for them, so it
# always sees them, and a parent that finished first is read final here. NOWAIT: a submit
# never waits for a parent's lock while it holds another's (a finish of two parents, locking
# them in its own order, would deadlock with it); the store sends the transaction again.
# Bound: the pairs as two arrays (:children, :parents).
LINK_PARENTS = ("SELECT id, tenant, depth FROM jobs WHERE id = ANY(%(parents)s::text[]) "
                "ORDER BY id FOR SHARE NOWAIT")
LINK_DEPTHS = ("UPDATE jobs SET depth = d.depth::int "
               "FROM jsonb_each_text(%(depths)s::jsonb) AS d(id, depth) WHERE jobs.id = d.id")
_LINKS = "unnest(%(children)s::text[], %(parents)s::text[]) AS l(child, parent)"
LINK_EDGES = (f"INSERT INTO job_deps (parent, child) SELECT l.parent, l.child FROM {_LINKS} "
              "JOIN jobs p ON p.id = l.parent "
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
                 || ' ended ' || (SELECT f.status FROM jobs f WHERE f.id = s.failed) END,
    finished_at = CASE WHEN {_SETTLE_FAILS} THEN %(now)s::float8 END
FROM (SELECT l.child, count(*) AS done,
             min(CASE WHEN p.status <> 'succeeded' THEN p.id END) AS failed
      FROM {_LINKS} JOIN jobs p ON p.id = l.parent
      WHERE p.status IN ('succeeded', 'dead', 'cancelled') GROUP BY l.child) AS s
WHERE jobs.id = s.child AND jobs.status = 'waiting'
RETURNING {", ".join("jobs." + c for c in JOB_COLUMNS.split(", "))}
"""
# ctx.parent_results of claimed jobs that have parents (json, not jsonb: results stay as the
# slot wrote them), and the parents' ids (whose artifacts ctx.parent_artifacts gets).
PARENT_RESULTS = ("SELECT c.id, json_object_agg(p.id, p.result::json)::text, "
                  "array_agg(p.id) FROM jobs c "
                  "CROSS JOIN LATERAL jsonb_array_elements_text(c.depends_on) AS d(id) "
                  "JOIN jobs p ON p.id = d.id AND p.tenant = c.tenant "
                  "WHERE c.id = ANY(%(ids)s::text[]) GROUP BY c.id")
WORKFLOW = (f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = %(tenant)s "
            f"AND workflow_id = %(workflow_id)s ORDER BY seq")
# The tenant's latest workflows (sqlite.WORKFLOWS says how).
WORKFLOWS = """
WITH w AS (SELECT workflow_id, min(seq) AS first FROM jobs
           WHERE tenant = %(tenant)s AND workflow_id IS NOT NULL
           GROUP BY workflow_id ORDER BY first DESC LIMIT %(limit)s)
SELECT w.workflow_id, (SELECT created_at FROM jobs WHERE seq = w.first), j.status, count(*)
FROM w JOIN jobs j ON j.tenant = %(tenant)s AND j.workflow_id = w.workflow_id
GROUP BY w.workflow_id, w.first, j.status ORDER BY w.first DESC
"""
# Fan-out (sqlite.SPAWN_PARENTS and friends, each one's why); bound: [[id, token], ...]
# as JSON. The UPDATE locks each parent row, so a cancel waits for the children to be in,
# and the spawns after it see its flag.
_FANOUT_PARENTS = ("UPDATE jobs SET workflow_id = coalesce(jobs.workflow_id, jobs.id) "
                   "FROM jsonb_array_elements(%(batch)s::jsonb) AS b(v) "
                   "WHERE jobs.id = b.v ->> 0 {guard} AND NOT jobs.cancel_requested "
                   "RETURNING jobs.id, jobs.workflow_id")
SPAWN_PARENTS = _FANOUT_PARENTS.format(
    guard="AND jobs.token = (b.v ->> 1)::bigint AND jobs.status = 'running'")
CONTINUE_PARENTS = _FANOUT_PARENTS.format(guard="AND jobs.status = 'succeeded'")
EXISTING = "SELECT id FROM jobs WHERE id = ANY(%(ids)s::text[])"
REFUSE = (f"UPDATE jobs SET error_code = '{ErrorCode.QUOTA_EXCEEDED}', error = r.v ->> 1, "
          "finished_at = %(now)s FROM jsonb_array_elements(%(refused)s::jsonb) AS r(v) "
          "WHERE jobs.id = r.v ->> 0")
CANCEL_REQUESTS = ("SELECT id, token FROM jobs WHERE owner = %(owner)s "
                   "AND status = 'running' AND cancel_requested")
REQUEUE = f"""
UPDATE jobs SET status = 'queued', error = %(cause)s, error_code = %(code)s,
    history = {_history_entry("'interrupted'", "%(code)s::text", "%(cause)s::text")},
    owner = NULL, token = NULL, lease_until = NULL
FROM jsonb_to_recordset(%(batch)s::jsonb) AS r(id text, token bigint)
WHERE jobs.id = r.id AND jobs.token = r.token AND jobs.status = 'running'
RETURNING jobs.id
"""
# Recovery charges a crash to the culprit alone when the dead pool named one, and never to a
# job of the recovering pool itself, which it never started (sqlite._RECOVER).
_CHARGED = ("(jobs.owner IS DISTINCT FROM %(owner)s::text AND (%(culprit)s::text IS NULL OR "
            "(jobs.id = %(culprit)s::text AND jobs.token = %(culprit_token)s::bigint)))")
_DIES = f"{_CHARGED} AND jobs.crashes + 1 >= %(max_crashes)s"
_RECOVER = f"""
UPDATE jobs SET
    status = CASE WHEN {_DIES} THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN {_DIES} THEN %(now)s::float8 END,
    crashes = jobs.crashes + ({_CHARGED})::int,
    error = CASE WHEN {_CHARGED} THEN %(cause)s::text ELSE %(spared)s::text END,
    error_code = %(code)s,
    history = {_history_entry(
        f"CASE WHEN %(culprit)s::text IS NULL THEN 'interrupted' WHEN {_CHARGED} "
        f"THEN 'crashed' ELSE 'interrupted' END", "%(code)s::text",
        f"CASE WHEN {_CHARGED} THEN %(cause)s::text ELSE %(spared)s::text END")},
    owner = NULL, token = NULL, lease_until = NULL
WHERE jobs.status = 'running' AND {{which}} RETURNING jobs.id
"""
RECOVER_EXPIRED = _RECOVER.format(which="jobs.lease_until < %(now)s::float8")
# At a pool's start: the jobs of this box's other owners (their ids start with the box).
RECOVER_BOX = _RECOVER.format(
    which="jobs.owner <> %(owner)s::text AND left(jobs.owner, length(%(box)s)) = %(box)s")
_RETRY_SET = ("UPDATE jobs SET status = 'queued', failures = 0, crashes = 0, run_at = NULL, "
              "finished_at = NULL, cancel_requested = false, error = NULL, error_code = NULL ")
# PostgreSQL has no UPDATE OR IGNORE: a unique job with a live twin is left out up front
# (and, of several dead twins, only the oldest goes back), so jobs_unique_live never fires
# but for a twin submitted concurrently, which the store handles as "not retried".
_NO_LIVE_TWIN = (f"NOT (d.unique_job AND EXISTS (SELECT 1 FROM jobs t WHERE "
                 f"t.seq <> d.seq AND t.tenant = d.tenant AND t.fingerprint = d.fingerprint "
                 f"AND t.unique_job "
                 f"AND t.status IN ({_LIVE})))")
RETRY = (f"{_RETRY_SET} WHERE id = %(id)s AND tenant = %(tenant)s AND seq IN ("
         f"SELECT d.seq FROM jobs d WHERE d.id = %(id)s AND {_NO_LIVE_TWIN}) "
         f"AND status IN ('retrying', 'dead', 'cancelled') RETURNING {JOB_COLUMNS}")
RETRY_DEAD = (f"{_RETRY_SET} WHERE seq IN (SELECT DISTINCT ON (CASE WHEN d.unique_job "
              f"THEN 'u' || d.fingerprint ELSE 's' || d.seq END) d.seq FROM jobs d "
              f"WHERE d.tenant = %(tenant)s AND d.status = 'dead' AND {_NO_LIVE_TWIN} "
              f"ORDER BY CASE WHEN d.unique_job THEN 'u' || d.fingerprint "
              f"ELSE 's' || d.seq END, d.seq) RETURNING seq")
PURGE_DEAD = "DELETE FROM jobs WHERE tenant = %(tenant)s AND status = 'dead' RETURNING seq"
EVENTS = ("SELECT e.seq, e.job_id, e.at, e.kind, e.data::text FROM job_events e "
          "JOIN jobs j ON j.id = e.job_id WHERE e.job_id = %(id)s AND j.tenant = %(tenant)s "
          "AND e.seq > %(after)s ORDER BY e.seq LIMIT %(limit)s")
# Every watched job's status and first events after its seq, in one statement: a LATERAL
# index walk of job_events_job per job, whatever its history.
WATCH = """
SELECT w.pos, j.status, e.seq, e.at, e.kind, e.data
FROM jsonb_array_elements(%(watches)s::jsonb) WITH ORDINALITY AS w (v, pos)
LEFT JOIN jobs j ON j.id = w.v ->> 0 AND j.tenant = w.v ->> 1
LEFT JOIN LATERAL (
    SELECT x.seq, x.at, x.kind, x.data::text AS data FROM job_events x
    WHERE x.job_id = j.id AND x.seq > (w.v ->> 2)::bigint ORDER BY x.seq LIMIT %(limit)s
) e ON true
ORDER BY w.pos, e.seq
"""
HEARTBEAT = ("INSERT INTO pools (owner, pid, slots, slot_count, busy, heartbeat_at, "
             "admission, slot_rows) VALUES (%(owner)s, %(pid)s, %(slots)s::jsonb, "
             "%(slot_count)s, %(busy)s, %(at)s, %(admission)s::jsonb, %(slot_rows)s::jsonb) "
             "ON CONFLICT (owner) DO UPDATE SET pid = excluded.pid, slots = excluded.slots, "
             "slot_count = excluded.slot_count, busy = excluded.busy, "
             "heartbeat_at = excluded.heartbeat_at, admission = excluded.admission, "
             "slot_rows = excluded.slot_rows")
POOLS = ("SELECT owner, pid, slots::text, slot_count, busy, heartbeat_at, admission::text, "
         "slot_rows::text FROM pools ORDER BY heartbeat_at DESC")
# The rows of pools that are gone: this box's earlier owners (at pool start), and any pool
# silent for longer than a pool's row is kept.
FORGET_POOLS = ("DELETE FROM pools WHERE owner <> %(owner)s AND "
                "(left(owner, length(%(box)s)) = %(box)s OR heartbeat_at < %(before)s)")
# A database that serve has not migrated yet has no schema_version table: schema 0.
SCHEMA_TABLE = "SELECT to_regclass('schema_version') IS NOT NULL"
SCHEMA_FOUND = "SELECT max(version) FROM schema_version"
SERVER = "SELECT current_setting('server_version'), pg_database_size(current_database())"
QUEUE_LAG = "SELECT count(*), min(created_at) FROM jobs WHERE status = 'queued'"
_TASK_COLUMNS = ("name, queue, timeout, max_attempts, memory, memory_limit, backoff_base, "
                 "backoff_max, params, cache_ttl, unique_job, rate_limit, rate_window, "
                 "concurrency_limit")
TASKS = f"SELECT {_TASK_COLUMNS} FROM tasks"
# Boxes that start at once each replace the registry: without taking turns, one's DELETE
# missed the other's uncommitted rows and its INSERT then hit them (a duplicate key, and a
# pool that failed to boot; seen in CI with two boxes).
PUBLISH_LOCK = 0x5C401A27
PUBLISH_TURN = "SELECT pg_advisory_xact_lock(%(lock)s)"
CLEAR_TASKS = "DELETE FROM tasks"
ADD_TASKS = (f"INSERT INTO tasks ({_TASK_COLUMNS}) SELECT "
             f"{', '.join('r.' + c for c in _TASK_COLUMNS.split(', '))} "
             f"FROM jsonb_array_elements(%(tasks)s::jsonb) AS e, "
             f"jsonb_populate_record(NULL::tasks, e) AS r")
CHECK_WRITABLE = "DELETE FROM pools WHERE false"
COUNTS = "SELECT status, count(*) FROM jobs GROUP BY status"
TENANT_COUNTS = "SELECT status, count(*) FROM jobs WHERE tenant = %(tenant)s GROUP BY status"
QUEUE_COUNTS = " UNION ALL ".join(
    f"SELECT queue, status, count(*) FROM jobs WHERE {{tenant}} "
    f"{'run_at IS NOT NULL AND ' if state in WAITING_STATES else ''}status = '{state}' "
    f"GROUP BY queue, status" for state in QUEUE_COUNT_STATES)
FINISHED_HISTORY = ("SELECT floor((finished_at - %(since)s) / %(step)s)::int, count(*) "
                    "FROM jobs WHERE tenant = %(tenant)s AND finished_at >= %(since)s "
                    "GROUP BY 1")
RECENTLY_FINISHED = ("SELECT task, status, created_at, started_at, finished_at FROM jobs "
                     "WHERE tenant = %(tenant)s AND finished_at >= %(since)s "
                     "ORDER BY finished_at DESC LIMIT %(limit)s")
# SKIP LOCKED: boxes pruning at once take disjoint batches. Without it each took the same
# oldest rows, all but one waited for them and deleted nothing, and a pruner that reads
# "0 deleted" as "done" stopped with expired jobs left.
_EXPIRED = ("SELECT seq FROM jobs WHERE status = %(state)s AND finished_at < %(before)s "
            "ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED")
PRUNE = f"DELETE FROM jobs WHERE seq IN ({_EXPIRED}) RETURNING seq"
COUNT_EXPIRED = ("SELECT count(*) FROM jobs WHERE status = %(state)s "
                 "AND finished_at < %(before)s")
# VACUUM marks what pruning freed as reusable (autovacuum does the same, later); VACUUM FULL
# rewrites the tables compactly under an exclusive lock: an operator's step.
COMPACT = "VACUUM (ANALYZE) jobs, job_events, rate_starts"
VACUUM = "VACUUM (FULL, ANALYZE) jobs, job_events, rate_starts"

# Moving jobs in from another store (`scholarsource migrate-to`), in one statement: ON
# CONFLICT DO NOTHING skips a job whose id, idempotency key, fire or live unique twin is
# already here, and only the jobs inserted now bring their events, so a second import of the
# same rows writes nothing. Queue pauses and schedule states already here stay as they are.
_CARRIED = ", ".join(CARRIED_COLUMNS)
IMPORT = f"""
WITH j AS (
    INSERT INTO jobs ({_CARRIED})
    SELECT {", ".join("r." + c for c in CARRIED_COLUMNS)}
    FROM jsonb_array_elements(%(jobs)s::jsonb) WITH ORDINALITY AS e(v, ord),
         jsonb_populate_record(NULL::jobs, e.v) AS r
    ORDER BY e.ord
    ON CONFLICT DO NOTHING RETURNING id),
ev AS (
    INSERT INTO job_events (job_id, at, kind, data)
    SELECT e.v ->> 'job_id', (e.v ->> 'at')::float8, e.v ->> 'kind', e.v -> 'data'
    FROM jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(v, ord)
    WHERE e.v ->> 'job_id' IN (SELECT id FROM j)
    ORDER BY e.ord
    RETURNING 1),
d AS (
    INSERT INTO job_deps (parent, child)
    SELECT e.v ->> 0, e.v ->> 1 FROM jsonb_array_elements(%(deps)s::jsonb) AS e(v)
    WHERE e.v ->> 1 IN (SELECT id FROM j)
    ON CONFLICT DO NOTHING RETURNING 1),
a AS (
    INSERT INTO artifacts (job_id, name, attempt, size, sha256, content_type, path)
    SELECT job_id, name, attempt, size, sha256, content_type, path
    FROM jsonb_populate_recordset(NULL::artifacts, %(artifacts)s::jsonb)
    WHERE job_id IN (SELECT id FROM j)
    ON CONFLICT DO NOTHING RETURNING 1),
q AS (
    INSERT INTO queues (name, paused, paused_at)
    SELECT name, paused, paused_at FROM jsonb_populate_recordset(NULL::queues, %(queues)s::jsonb)
    ON CONFLICT (name) DO NOTHING RETURNING 1),
s AS (
    INSERT INTO schedules (name, paused, "cursor")
    SELECT name, paused, "cursor"
    FROM jsonb_populate_recordset(NULL::schedules, %(schedules)s::jsonb)
    ON CONFLICT (name) DO NOTHING RETURNING 1)
SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM ev), (SELECT count(*) FROM q),
       (SELECT count(*) FROM s)
"""

# Quotas (store/admission.py; the SQLite store's QUOTA_STATE and friends). A quota
# transaction first takes a transaction-scoped advisory lock per tenant and per bucket, and
# SERVER_QUOTA (shared with %(shared)s) under a server-wide cap, in name order (no deadlock
# between two submits), so two boxes never spend the same tokens or the same place under a
# max_queued; it answers QUOTA_MARGIN. Then it reads, in one statement, the overrides of
# its tenants, every tenant's count of non-final jobs (kept by the jobs_live_* triggers) and
# its buckets.
QUOTA_LOCKS = (f"SELECT count(*), {QUOTA_MARGIN} FROM (SELECT CASE "
               f"WHEN n = '{SERVER_QUOTA}' AND %(shared)s "
               "THEN pg_advisory_xact_lock_shared(hashtextextended(n, 0)) "
               "ELSE pg_advisory_xact_lock(hashtextextended(n, 0)) END FROM "
               "(SELECT n FROM unnest(%(names)s::text[]) AS n ORDER BY n) AS sorted) AS locked")
# A transaction that inserts for several tenants takes their tenant_live rows first, in
# tenant order, as one INSERT's statement-level trigger does (jobs_live_*): a group commit
# writes its requests in arrival order, several statements, and taking tenant b's row before
# tenant a's deadlocked with another worker's one-statement insert for a and b (1 s of
# deadlock_timeout, then a 503 for every request of the group). An upsert, since FOR UPDATE
# would not lock a tenant that has no row yet.
LOCK_LIVE = ("INSERT INTO tenant_live (tenant, live) SELECT t, 0 FROM "
             "unnest(%(tenants)s::text[]) AS t ORDER BY t "
             "ON CONFLICT (tenant) DO UPDATE SET live = tenant_live.live")
QUOTA_STATE = """
SELECT 0, tenant, rate_limit::float8, rate_window, max_queued::float8, weight::float8
    FROM tenant_limits WHERE tenant = ANY(%(tenants)s::text[])
UNION ALL SELECT 1, tenant, live::float8, NULL, NULL, NULL FROM tenant_live
UNION ALL SELECT 2, name, tokens, at, NULL, NULL FROM quota_buckets
    WHERE name = ANY(%(buckets)s::text[])
"""
SAVE_LEVELS = ("INSERT INTO quota_buckets (name, tokens, at) SELECT * FROM "
               "unnest(%(names)s::text[], %(tokens)s::float8[], %(ats)s::float8[]) "
               "ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, at = excluded.at")
TENANT_OVERRIDES = ("SELECT tenant, rate_limit, rate_window, max_queued, weight "
                    "FROM tenant_limits ORDER BY tenant")
SET_TENANT_LIMITS = """
INSERT INTO tenant_limits (tenant, rate_limit, rate_window, max_queued, weight)
VALUES (%(tenant)s, %(rate_limit)s, %(rate_window)s, %(max_queued)s, %(weight)s)
ON CONFLICT (tenant) DO UPDATE SET
    rate_limit = coalesce(excluded.rate_limit, tenant_limits.rate_limit),
    rate_window = coalesce(excluded.rate_window, tenant_limits.rate_window),
    max_queued = coalesce(excluded.max_queued, tenant_limits.max_queued),
    weight = coalesce(excluded.weight, tenant_limits.weight)
"""
CLEAR_TENANT_LIMITS = "DELETE FROM tenant_limits WHERE tenant = %(tenant)s RETURNING tenant"
LIVE_COUNTS = "SELECT tenant, live FROM tenant_live WHERE live > 0 ORDER BY tenant"

# API keys and dashboard sessions (see the SQLite store's).
_KEY_COLUMNS = "id, tenant, role, name, rate, created_at, revoked_at, digest"
CREATE_KEY = (f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (%(id)s, %(tenant)s, %(role)s, "
              "%(name)s, %(rate)s, %(created_at)s, %(revoked_at)s, %(digest)s)")
LIST_KEYS = f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
FIND_KEY = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %(id)s"
# Revoke and end the key's sessions in one statement.
REVOKE_KEY = f"""
WITH k AS (UPDATE api_keys SET revoked_at = coalesce(revoked_at, %(now)s) WHERE id = %(id)s
           RETURNING {_KEY_COLUMNS}),
s AS (DELETE FROM sessions WHERE key_id IN (SELECT id FROM k))
SELECT {_KEY_COLUMNS} FROM k
"""
CREATE_SESSION = """
WITH gone AS (DELETE FROM sessions WHERE expires_at <= %(now)s)
INSERT INTO sessions (digest, key_id, expires_at) VALUES (%(digest)s, %(key_id)s, %(expires_at)s)
"""
FIND_SESSION = (f"SELECT {', '.join('k.' + c for c in _KEY_COLUMNS.split(', '))} "
                "FROM sessions AS s JOIN api_keys AS k ON k.id = s.key_id "
                "WHERE s.digest = %(digest)s AND s.expires_at > %(now)s "
                "AND k.revoked_at IS NULL")
END_SESSION = "DELETE FROM sessions WHERE digest = %(digest)s"
