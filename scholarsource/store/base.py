"""The store contract: job states, the records that cross it, and the methods every backend has.

SQLite is the embedded backend (`store/sqlite.py`); a PostgreSQL one would implement the same
`Store` methods. No SQL lives here.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from scholarsource.findings import Check
from scholarsource.limits import TenantLimits
from scholarsource.quotas import Ask, QuotaPolicy, TenantOverride, effective

if TYPE_CHECKING:
    from scholarsource.store.admission import Admission
from scholarsource.keys import ApiKey

DEFAULT_TENANT = "default"


class JobState(enum.StrEnum):
    """Where a job is in its life.

    `scheduled` waits for its `run_at` (a delayed submit); `waiting` for its parents (jobs
    it `depends_on`) to finish; `retrying` means the last attempt
    failed and another one is due at `run_at` (backoff); `dead` is the dead-letter state: no
    attempt is left, and only an operator re-queues it. Clients read `final` (the job JSON
    carries it) rather than a list of names.
    """

    SCHEDULED = "scheduled"
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True when the job will not run again unless an operator re-queues it."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})
# The states in which a job will still run: a unique job has at most one twin in them. The
# one place to change when states are added or renamed (a test then asks for the migration
# that recreates the jobs_unique_live index over the new set).
LIVE_STATES = (JobState.SCHEDULED, JobState.WAITING, JobState.QUEUED, JobState.RUNNING,
               JobState.RETRYING)
# Waiting for their `run_at`: out of the claim's ordering until promote() queues them.
WAITING_STATES = frozenset({JobState.SCHEDULED, JobState.RETRYING})
# What queue_counts counts (/api/stats, /metrics): the live states and the dead letters, not
# the states that only grow.
QUEUE_COUNT_STATES = tuple(state for state in JobState
                           if state not in (JobState.SUCCEEDED, JobState.CANCELLED))
# What an operator may put back in the queue with fresh attempts.
RETRYABLE_STATES = frozenset({JobState.RETRYING, JobState.DEAD, JobState.CANCELLED})


class Ending(enum.StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"          # the task raised, timed out, went over its memory cap...
    CRASHED = "crashed"        # its process died: counts as a failure and as a crash
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # shutdown or pool death: runs again, nothing is charged


class ErrorCode(enum.StrEnum):
    """Why an attempt did not succeed: a job's `error_code` and its history entries'. The
    values are API (README lists them): add codes, never rename one."""

    TASK_ERROR = "task_error"              # the task raised
    RETRY = "retry"                        # the task raised Retry
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    WORKER_DIED = "worker_died"            # the job's process ended unexpectedly
    CANCELLED = "cancelled"
    RESULT_TOO_LARGE = "result_too_large"
    RESULT_NOT_JSON = "result_not_json"
    BAD_PARAMS = "bad_params"              # the params cannot be decoded in the slot
    MESSAGE_TOO_LARGE = "message_too_large"  # the job's process sent the pool too much
    BAD_MESSAGE = "bad_message"            # ... or something the pool cannot take
    INTERRUPTED = "interrupted"            # shutdown: runs again, uncharged
    POOL_DIED = "pool_died"                # the pool died running it
    LEASE_EXPIRED = "lease_expired"        # its pool stopped renewing the lease
    ARTIFACT_TOO_LARGE = "artifact_too_large"  # its files passed max_artifact_bytes
    BAD_ARTIFACT = "bad_artifact"          # a link, directory or odd name among its files
    PARENT_FAILED = "parent_failed"        # a job it depends on ended dead or cancelled
    QUOTA_EXCEEDED = "quota_exceeded"      # a task's child past its tenant's max_queued

    def explain(self, text: str) -> str:
        """The error message for this code: "code: text"."""
        return f"{self.value}: {text}"


class Reused(enum.StrEnum):
    """Why a submit answered with a job that already existed instead of creating one."""

    IDEMPOTENT = "idempotent"  # its Idempotency-Key named this job before
    CACHED = "cached"          # this job, same task and params, succeeded within cache_ttl
    UNIQUE = "unique"          # this unique job, same task and params, has not ended yet


def fingerprint(task: str, params: dict[str, Any]) -> str:
    """What "the same task and params" means for the cache and unique jobs: a hash of the
    task name and the params as canonical JSON (sorted keys, no spaces), so key order and
    spacing never matter."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(f"{task}\0{canonical}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class NewJob:
    """What a submit asks for, already validated."""

    task: str
    params: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None = None
    tenant: str = DEFAULT_TENANT
    memory_limit: int | None = None
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    idempotency_key: str | None = None
    # A job of the same task and params that succeeded less than cache_ttl seconds ago is
    # the answer (unless bypass_cache); for a unique job, so is such a job still live.
    cache_ttl: float | None = None
    bypass_cache: bool = False
    unique: bool = False
    run_at: float | None = None  # wall clock: not before then (None: at once)
    # A schedule's job: its name and fire time; `triggered` for a run asked by hand.
    schedule: str | None = None
    scheduled_for: float | None = None
    triggered: bool = False
    # At most concurrency_limit jobs of the tenant with this key run at once (pool/policy.py).
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    # Dependencies (store/schema.py, _V18): the job waits until every parent succeeded;
    # a parent that ends dead or cancelled cancels it (parent_failed), unless
    # on_parent_failure is "run". `id` is set when the caller must know it before the insert
    # (a workflow's steps name each other); `workflow_id` and `step` place it in a workflow,
    # `parent_id` names the job whose task created it.
    depends_on: tuple[str, ...] = ()
    on_parent_failure: str = "cancel"
    id: str | None = None
    workflow_id: str | None = None
    step: str | None = None
    parent_id: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """Its fingerprint when the cache or uniqueness concerns it (None: a plain job,
        which no later submit looks for)."""
        if self.cache_ttl is None and not self.bypass_cache and not self.unique:
            return None
        return fingerprint(self.task, self.params)

    @property
    def looks_first(self) -> bool:
        """Whether a submit must look for an existing job before it may insert this one."""
        return (self.idempotency_key is not None or self.unique or bool(self.depends_on)
                or (self.cache_ttl is not None and not self.bypass_cache))


@dataclass(frozen=True)
class Artifact:
    """One file of a job's results (scholarsource/artifacts.py)."""

    name: str
    size: int
    sha256: str
    content_type: str
    path: str  # under artifacts_dir: JOB_ID/ATTEMPT/NAME

    def to_json(self, job_id: str) -> dict[str, Any]:
        """Its entry in the job JSON's `artifacts`, with the URL that downloads it."""
        return {"name": self.name, "size": self.size, "sha256": self.sha256,
                "content_type": self.content_type,
                "url": f"/api/jobs/{job_id}/artifacts/{quote(self.name, safe='')}"}


@dataclass(frozen=True)
class Job:
    """A job as the API shows it (internal lease and fencing fields are left out)."""

    id: str
    tenant: str
    task: str
    queue: str
    priority: int
    status: JobState
    params: dict[str, Any]
    result: Any
    error: str | None
    error_code: str | None
    attempts: int
    max_attempts: int
    failures: int
    crashes: int
    timeout: float | None
    memory_limit: int | None
    backoff_base: float
    backoff_max: float
    progress: float | None
    progress_message: str | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    run_at: float | None
    peak_rss: int | None
    cpu_time: float | None
    attempts_history: list[dict[str, Any]]
    idempotency_key: str | None = None
    cache_ttl: float | None = None
    bypass_cache: bool = False
    unique: bool = False
    schedule: str | None = None
    scheduled_for: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    # Read with the job alone (Store.get); lists leave it None and their JSON leaves it out.
    # Not compared: the same job read either way is equal.
    artifacts: list[Artifact] | None = field(default=None, compare=False)
    depends_on: list[str] = field(default_factory=list)
    on_parent_failure: str = "cancel"
    workflow_id: str | None = None
    step: str | None = None
    parent_id: str | None = None

    @property
    def wait_time(self) -> float | None:
        """Seconds from submit to the start of the latest attempt."""
        return None if self.started_at is None else round(self.started_at - self.created_at, 6)

    @property
    def run_time(self) -> float | None:
        """Seconds the latest attempt ran, once the job is final."""
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 6)

    def to_json(self) -> dict[str, Any]:
        """The job's public JSON form. `tenant` tells an admin's view of every tenant whose
        job it is; any other caller only ever sees its own."""
        body = {
            "id": self.id, "tenant": self.tenant, "task": self.task, "queue": self.queue,
            "priority": self.priority,
            "status": self.status.value, "final": self.status.final, "params": self.params,
            "result": self.result,
            "error": self.error, "error_code": self.error_code, "attempts": self.attempts,
            "max_attempts": self.max_attempts, "failures": self.failures,
            "crashes": self.crashes, "timeout": self.timeout,
            "memory_limit": self.memory_limit, "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max, "progress": self.progress,
            "progress_message": self.progress_message,
            "cancel_requested": self.cancel_requested, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "run_at": self.run_at, "wait_time": self.wait_time, "run_time": self.run_time,
            "cpu_time": self.cpu_time, "peak_rss": self.peak_rss,
            "attempts_history": self.attempts_history,
            "idempotency_key": self.idempotency_key, "cache_ttl": self.cache_ttl,
            "bypass_cache": self.bypass_cache, "unique": self.unique,
            "schedule": self.schedule, "scheduled_for": self.scheduled_for,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "depends_on": self.depends_on, "on_parent_failure": self.on_parent_failure,
            "workflow_id": self.workflow_id, "step": self.step, "parent_id": self.parent_id,
        }
        if self.artifacts is not None:
            body["artifacts"] = [artifact.to_json(self.id) for artifact in self.artifacts]
        return body


@dataclass(frozen=True)
class WorkflowInfo:
    """One workflow in a list: its id, when its first job was submitted, and how many of its
    jobs are in each state."""

    id: str
    created_at: float
    counts: dict[str, int]

    @property
    def steps(self) -> int:
        """How many jobs the workflow has."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class Claim:
    """A job handed to the pool: which attempt it is and the token that fences it."""

    id: str
    task: str
    params_json: str  # as stored: only the slot decodes it (see pool/slots.py)
    attempt: int
    max_attempts: int
    timeout: float | None
    token: int
    failures: int = 0
    memory_limit: int | None = None
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    queue: str = "default"
    crashes: int = 0
    created_at: float = 0.0
    tenant: str = DEFAULT_TENANT
    has_parents: bool = False
    parents_json: str | None = None  # {parent id: result} as JSON text, for ctx.parent_results
    # Each parent's artifacts, for ctx.parent_artifacts (only a claim with parents has any).
    parent_artifacts: dict[str, list[Artifact]] | None = None


@dataclass(frozen=True)
class Event:
    """One entry of a job's history: a state change, progress or a log line."""

    seq: int
    job_id: str
    at: float
    kind: str  # "state" | "progress" | "log"
    data: dict[str, Any]


@dataclass(frozen=True)
class Watch:
    """A job whose events a reader follows: the tenant it is read as, and the seq of the last
    event the reader has (0: none yet)."""

    tenant: str
    job_id: str
    after: int = 0


@dataclass(frozen=True)
class Watched:
    """What one read saw of a watched job, in one snapshot: its status (None: the tenant has
    no such job, or it is gone) and its first events after the watch's seq, oldest first."""

    status: JobState | None
    events: list[Event]


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, as the dispatcher reports it."""

    job_id: str
    token: int
    ending: Ending
    result_json: str | None = None   # the result, already encoded by the slot
    error_code: ErrorCode | None = None
    error: str | None = None         # shown to clients
    error_detail: str | None = None  # traceback, kept server-side
    retry_at: float | None = None    # a failure: when the next attempt may start
    exit: str | None = None          # a crash: the signal or exit code
    peak_rss: int | None = None      # the slot's peak RSS during the attempt, bytes
    cpu_time: float | None = None    # CPU seconds of the attempt (its process and children)
    artifacts: tuple[Artifact, ...] = ()  # a success's files: recorded with it, or not at all
    # A success's continuation (ctx.continue_with): created in the finish's transaction,
    # only if the attempt's success is recorded (Store.finish).
    then: NewJob | None = None


@dataclass(frozen=True)
class Spawn:
    """A job a running attempt created with ctx.submit (store/fanout.py): `job` has its
    derived id, tenant, parent_id and siblings set; written only while the attempt holding
    `token` still runs and no cancel was asked for it."""

    parent_id: str
    token: int
    job: NewJob


@dataclass(frozen=True)
class Note:
    """Progress or a log line from a running attempt."""

    job_id: str
    token: int
    kind: str  # "progress" | "log"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskDefaults:
    """A registered task as the API sees it: its name and the defaults its jobs get."""

    name: str
    queue: str
    timeout: float | None
    max_attempts: int | None
    memory: int | None = None        # what one job is expected to need, bytes
    memory_limit: int | None = None
    backoff_base: float | None = None
    backoff_max: float | None = None
    params: dict[str, Any] | None = None  # JSON Schema of its params (tasks/params.py)
    cache_ttl: float | None = None
    unique: bool = False
    rate_limit: int | None = None  # at most this many starts ...
    rate_window: float | None = None  # ... in any window of these seconds
    concurrency_limit: int | None = None  # a concurrency key's default limit


@dataclass(frozen=True)
class Gate:
    """The queues a claim may take from, and the tenants' weights in their fair share of the
    slots, as the pool's policy decides (pool/policy.py)."""

    skip: tuple[str, ...] = ()  # never these
    only: tuple[str, ...] | None = None  # only these (None: any other)
    weights: tuple[tuple[str, int], ...] = ()  # (tenant, weight); a tenant not named: 1


OPEN = Gate()


@dataclass
class QueueStats:
    """One queue's live jobs and recent finishes, as the store counts them."""

    name: str
    queued: int = 0
    scheduled: int = 0
    running: int = 0
    finished: int = 0  # reached a final state since the time asked about
    oldest_queued_at: float | None = None


@dataclass(frozen=True)
class RateStats:
    """A rate-limited task: at most `limit` starts per `window` seconds."""

    task: str
    queue: str
    limit: int
    window: float
    started: int  # in the window that ends now
    queued: int

    @property
    def throttled(self) -> bool:
        """Whether its queued jobs are waiting for the window to move."""
        return self.queued > 0 and self.started >= self.limit


@dataclass(frozen=True)
class Finished:
    """A job that reached a final state recently (for throughput and timing figures)."""

    task: str
    status: JobState
    created_at: float
    started_at: float | None
    finished_at: float


@dataclass(frozen=True)
class ScheduleState:
    """What the store keeps of a schedule: its pause, how far its fires were handled, and
    its latest job (None once none is left)."""

    name: str
    paused: bool
    # Every fire time up to this one was handled (fired or skipped); None: never seen.
    cursor: float | None
    last_job_id: str | None = None
    last_status: JobState | None = None
    last_fire: float | None = None  # the latest job's scheduled_for


@dataclass(frozen=True)
class PoolInfo:
    """What the pool last said about itself (its heartbeat)."""

    pid: int
    slots: list[int]
    slot_count: int
    busy: int
    heartbeat_at: float
    admission: dict[str, Any] = field(default_factory=dict)  # why jobs wait, if they do
    # One dict per slot: slot, pid, job_id, task, started_at (wall clock), rss (bytes) and
    # cpu_seconds (its process's CPU time so far); the dashboard's slots view.
    slot_rows: list[dict[str, Any]] = field(default_factory=list)
    owner: str = ""  # its owner id, host/box/boot (store/owner.py): its row's key


# A pool silent for this long is forgotten (its row dropped) when a pool starts.
POOL_FORGET_SECONDS = 86400.0


@dataclass(frozen=True)
class Storage:
    """How much room the store takes, as /api/stats ("database") and /metrics
    (scholarsource_database_bytes) show it."""

    database_bytes: int  # the database itself
    log_bytes: int  # its write-ahead log (SQLite's -wal file)
    # How pruning gives space back: "incremental" (the store shrinks as jobs go), "none"
    # (freed space is reused, not given back: `prune --vacuum` converts a SQLite file), or
    # the backend's own mechanism.
    reclaim: str = "incremental"

    def to_json(self) -> dict[str, int]:
        """The /api/stats `database` object (its keys are API)."""
        return {"size_bytes": self.database_bytes, "wal_bytes": self.log_bytes}


@dataclass(frozen=True)
class SchemaVersion:
    """The schema a store holds against the one this code writes."""

    found: int
    wanted: int

    def problem(self) -> str | None:
        """What to do when they differ (None: they match)."""
        if self.found == self.wanted:
            return None
        return (f"has schema {self.found}, this ScholarSource {self.wanted}: "
                + ("start `scholarsource serve` once to migrate it" if self.found < self.wanted
                   else "upgrade ScholarSource"))


class Wake(enum.StrEnum):
    """What a wake-up tells the pools. Only a hint that cuts latency: they poll anyway."""

    SUBMITTED = "s"
    CANCELLED = "c"  # a running job was asked to stop
    SCHEDULED = "t"  # a delayed job was submitted: it may be due before the next known one


class WakeSource(Protocol):
    """Where a pool's wake-ups arrive (`Store.listen`): the dispatcher watches the file
    descriptor and drains it when it is readable."""

    def fileno(self) -> int:
        """Readable when wake-ups are pending."""

    def drain(self) -> set[Wake]:
        """Every pending wake-up, without blocking: the distinct kinds seen."""

    def close(self) -> None:
        """Stop listening."""


@dataclass(frozen=True)
class BackupResult:
    """What `Store.backup` wrote."""

    path: Path
    pages: int
    bytes: int


# The jobs columns a move between stores carries (`Store.import_rows`): all but the row
# counter and the lease (owner, token, lease_until), which belong to the store that ran it.
CARRIED_COLUMNS = (
    "id", "tenant", "task", "queue", "priority", "status", "params", "result", "error",
    "error_detail", "error_code", "attempts", "max_attempts", "failures", "crashes", "timeout",
    "memory_limit", "backoff_base", "backoff_max", "progress", "progress_message",
    "cancel_requested", "created_at", "started_at", "finished_at", "run_at", "peak_rss",
    "cpu_time", "history", "idempotency_key", "fingerprint", "cache_ttl", "bypass_cache",
    "unique_job", "schedule", "scheduled_for", "triggered", "concurrency_key",
    "concurrency_limit", "depends_on", "on_parent_failure", "waiting_for", "depth",
    "workflow_id", "step", "parent_id")


@dataclass(frozen=True)
class Carried:
    """Rows on their way from one store to another (`scholarsource migrate-to`), as JSON
    values: each job keyed by CARRIED_COLUMNS (params and result as their stored JSON text,
    history a list, flags booleans), its events (job_id, at, kind, data), the dependency
    edges still waiting to be released ([parent, child], for the jobs carried), and the
    queue pauses (name, paused, paused_at) and schedule states (name, paused, cursor)."""

    jobs: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)
    deps: list[list[str]] = field(default_factory=list)
    # The carried jobs' artifacts (job_id, name, attempt, size, sha256, content_type, path):
    # their rows only; the files stay where artifacts_dir has them.
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Imported:
    """What `Store.import_rows` wrote; a row already there is skipped, not counted."""

    jobs: int = 0
    skipped: int = 0  # jobs whose id, idempotency key, fire or live unique twin was there
    events: int = 0
    queues: int = 0
    schedules: int = 0
    keys: int = 0  # API keys (migrate-to copies them after the jobs)

    def add(self, other: Imported) -> None:
        """Count `other`'s rows in too."""
        for name in ("jobs", "skipped", "events", "queues", "schedules", "keys"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Store(abc.ABC):
    """The durable queue. Every method is one short transaction; all are tenant-scoped
    where a client can reach them."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection."""

    # -- the API's side ---------------------------------------------------------------------
    @abc.abstractmethod
    async def submit_many(self, news: list[NewJob]) -> list[Job]:
        """Insert jobs, in order, in one transaction; returns once it is committed. A job whose
        `run_at` is still ahead is `scheduled`, one that `depends_on` others `waiting` (or
        at once queued or cancelled, when its parents are already final), any other
        `queued`. Raises UnknownParent, having written nothing, for a parent the tenant
        does not have."""

    async def submit(self, new: NewJob) -> Job:
        """Insert one queued job; returns once the row is committed."""
        return (await self.submit_many([new]))[0]

    @abc.abstractmethod
    async def submit_once(self, new: NewJob) -> tuple[Job, Reused | None]:
        """Insert `new` unless the tenant already has a job that answers it, checked and
        inserted atomically: the job its idempotency key named, one of the same task and
        params that succeeded within its `cache_ttl` (unless `bypass_cache`), or, if it is
        unique, a unique one of the same task and params in a live state. Returns the job
        and why it was reused (None: created now)."""

    @abc.abstractmethod
    async def admit(self, groups: list[tuple[Ask, list[NewJob]]],
                    policy: QuotaPolicy) -> list[Admission]:
        """Submit each group of jobs that its quotas admit (the key's and the tenant's
        token buckets, the tenant's and the server's max_queued), in order, in one
        transaction (store/admission.py); a refused group writes nothing and takes no
        tokens. Jobs that look first (`NewJob.looks_first`) come one group per call. Every
        cap is exact however many processes and boxes submit at once."""

    @abc.abstractmethod
    async def tenant_overrides(self) -> dict[str, TenantOverride]:
        """The per-tenant limits `scholarsource tenants set` stored."""

    @abc.abstractmethod
    async def set_tenant_limits(self, tenant: str, override: TenantOverride) -> None:
        """Store the fields of `override` that are set (others keep their value)."""

    @abc.abstractmethod
    async def clear_tenant_limits(self, tenant: str) -> bool:
        """Drop the tenant's stored limits (the config's apply again); False if none."""

    @abc.abstractmethod
    async def live_counts(self) -> dict[str, int]:
        """Non-final jobs per tenant, as the store keeps count (no scan of the jobs)."""

    async def tenant_limits(self, config: dict[str, TenantLimits]) -> dict[str, TenantLimits]:
        """Every tenant's limits in force: each stored override over its `config` table
        (Config.tenants), for every tenant named in either."""
        overrides = await self.tenant_overrides()
        return {name: effective(overrides.get(name), config.get(name))
                for name in sorted({*overrides, *config})}

    @abc.abstractmethod
    async def get(self, tenant: str | None, job_id: str) -> Job | None:
        """The job, if it exists for this tenant (None: for any tenant, an admin's look)."""

    @abc.abstractmethod
    async def list_jobs(self, tenant: str | None, *, status: str | None = None,
                        task: str | None = None, queue: str | None = None, limit: int = 50,
                        cursor: int | None = None, search: str | None = None,
                        search_scan: int = 10_000,
                        schedule: str | None = None) -> tuple[list[Job], int | None]:
        """A page of jobs, newest first, and the cursor of the next page (None at the end).
        With `search`, only jobs whose id, task or params contain it (any case), among the
        newest `search_scan` jobs the other filters match: a page may then hold fewer than
        `limit` jobs, even none, and still have a next page.

        `tenant` None (an admin's view of every tenant) has no index to walk per filter, so
        a page looks at the newest `search_scan` jobs past the cursor and keeps those the
        filters match: again a page may be short and still have a next one."""

    @abc.abstractmethod
    async def cancel(self, tenant: str, job_id: str) -> Job | None:
        """Cancel a queued job at once, or flag a running one; returns the job after."""

    @abc.abstractmethod
    async def cancel_matching(self, tenant: str, *, status: str | None = None,
                              task: str | None = None,
                              queue: str | None = None) -> tuple[int, int]:
        """Cancel every scheduled, queued and retrying job of the tenant that matches the
        filters, and flag every running one, in one transaction; returns how many were
        cancelled and how many flagged. `status` narrows to one of those four states."""

    @abc.abstractmethod
    async def workflow(self, tenant: str, workflow_id: str) -> list[Job]:
        """The tenant's jobs of one workflow, in submit order (none: no such workflow)."""

    @abc.abstractmethod
    async def workflows(self, tenant: str, limit: int) -> list[WorkflowInfo]:
        """The tenant's `limit` most recent workflows, newest first (by their first job). It
        reads the tenant's entries of the jobs_workflow index, one per workflow job kept, and
        the jobs of the workflows listed."""

    @abc.abstractmethod
    async def cancel_workflow(self, tenant: str, workflow_id: str) -> tuple[int, int]:
        """Cancel every unfinished job of the tenant's workflow and flag its running ones,
        in one transaction, as cancel_matching does; returns how many of each."""

    @abc.abstractmethod
    async def retry(self, tenant: str, job_id: str) -> tuple[Job | None, bool]:
        """Re-queue a retrying, dead or cancelled job with fresh attempts. Returns the job
        after (None: no such job) and whether it was re-queued (False: it was in another
        state, or it is unique and a twin of it is live: the first to be live keeps its
        place)."""

    @abc.abstractmethod
    async def retry_dead(self, tenant: str) -> int:
        """Re-queue every dead job of the tenant (but a unique one whose twin is live, or
        becomes live first in this same call); returns how many."""

    @abc.abstractmethod
    async def purge_dead(self, tenant: str) -> int:
        """Delete every dead job of the tenant and its events; returns how many."""

    @abc.abstractmethod
    async def events(self, tenant: str, job_id: str, after: int = 0,
                     limit: int = 500) -> list[Event]:
        """Events of one job with seq > after, oldest first."""

    @abc.abstractmethod
    async def watch(self, watches: list[Watch], limit: int = 500) -> list[Watched]:
        """Every watched job's status and its events after the watch's seq (at most `limit`
        each), in one statement and one snapshot, in the order of `watches`: the one query
        per tick of an API worker's event reader, however many streams it serves. A job is
        read as its watch's tenant only: another tenant's job looks absent."""

    @abc.abstractmethod
    async def storage(self) -> Storage:
        """How much room the store takes (read, not counted: cheap enough for every
        scrape)."""

    @abc.abstractmethod
    async def schema_version(self) -> SchemaVersion:
        """The schema the store holds and the one this code writes (`migrate_store` makes
        them equal)."""

    @abc.abstractmethod
    async def checks(self) -> list[Check]:
        """What `scholarsource doctor` checks on the open store, read-only and safe while the
        server runs: one named finding each (SQLite: "database", its integrity and schema
        version; PostgreSQL: the connection, server version, migrations, queue lag)."""

    @abc.abstractmethod
    async def backup(self, target: Path, *, force: bool = False) -> BackupResult:
        """Copy the store, consistently while others write to it, to the file `target` (an
        existing one only with `force`). Raises BackupError when it cannot, and
        BackupUnsupported, whose message names the tool to use instead (pg_dump), when the
        backend does not copy itself."""

    @abc.abstractmethod
    def wake(self, kind: Wake) -> None:
        """Wake the pools that serve this store (a submit, a cancel). Never blocks and never
        fails the caller: a backend whose wake-up is a statement sends it in the
        background (SQLite: a datagram to this data_dir's pool; PostgreSQL: NOTIFY)."""

    @abc.abstractmethod
    async def listen(self) -> WakeSource:
        """Start receiving wake-ups, for the pool (one listener per store). Raises
        StoreError when another pool already listens where only one may."""

    @abc.abstractmethod
    async def check_writable(self) -> None:
        """Take and release the write lock; raises StoreUnavailable if that fails."""

    @abc.abstractmethod
    async def pools(self) -> list[PoolInfo]:
        """Each pool's last heartbeat (one row per owner: a starting pool drops the rows of
        its box's dead pools and of long-silent ones), the newest first."""

    @abc.abstractmethod
    async def tasks(self) -> dict[str, TaskDefaults]:
        """The registry the pool last published."""

    @abc.abstractmethod
    async def counts(self, tenant: str | None = None) -> dict[str, int]:
        """Number of jobs in each state, for one tenant or (None) all of them."""

    @abc.abstractmethod
    async def queue_counts(self, tenant: str | None) -> dict[str, dict[str, int]]:
        """Jobs per queue in each state that is not `succeeded` or `cancelled` (those only
        grow), for one tenant or (None) all of them."""

    @abc.abstractmethod
    async def finished_history(self, tenant: str, since: float, step: float,
                               buckets: int) -> list[int]:
        """How many of the tenant's jobs reached a final state in each of `buckets`
        consecutive spans of `step` seconds from `since` (a later one counts in the last)."""

    @abc.abstractmethod
    async def recently_finished(self, tenant: str, since: float,
                                limit: int) -> list[Finished]:
        """The tenant's latest jobs (at most `limit`) that reached a final state since
        `since`."""

    # -- the pool's side --------------------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, owner: str, n: int, lease_seconds: float,
                    refs: list[int] | None = None, gate: Gate = OPEN) -> list[Claim]:
        """Atomically move up to `n` queued jobs that may start to running, leased to
        `owner`, in queue order; with `refs` (from `peek`), only those jobs that are still
        queued. May start: a queue `gate` lets through and not paused, a task not at its
        rate limit, a concurrency key under its limit (pool/policy.py). While more than one
        tenant has queued jobs, a claim is one tenant's turn: among the tenants with jobs
        that may start at the top priority, the one furthest behind its share of the slots
        (`gate.weights`) takes its next jobs at that priority; the caller claims again for
        the rest. A lone tenant's claim takes up to `n` in queue order."""

    @abc.abstractmethod
    async def peek(self, n: int, gate: Gate = OPEN) -> list[tuple[int, str]]:
        """(ref, task) of the first `n` queued jobs that may start, in claim order."""

    @abc.abstractmethod
    async def rate_free_at(self) -> float | None:
        """When (wall clock) the next start leaves a rate-limited task's window, if any."""

    @abc.abstractmethod
    async def pause_queue(self, name: str, paused: bool) -> None:
        """Pause (its queued jobs stay queued) or resume a queue; survives restarts."""

    @abc.abstractmethod
    async def paused_queues(self) -> set[str]:
        """The names of the paused queues."""

    @abc.abstractmethod
    async def queue_stats(self, since: float, tenant: str | None = None) -> list[QueueStats]:
        """Per queue with live jobs or finishes since `since`: its counts, by name; only
        `tenant`'s jobs and queues when one is named (None: every tenant's)."""

    @abc.abstractmethod
    async def rates(self, tenant: str | None = None) -> list[RateStats]:
        """Each rate-limited task: its limit, starts in its window now (every tenant's: the
        limit is the server's), and its queued jobs (only `tenant`'s when one is named)."""

    @abc.abstractmethod
    async def promote(self) -> float | None:
        """Move scheduled and retrying jobs whose `run_at` has come to the queue, in one
        statement; returns the next `run_at` still ahead, if any."""

    @abc.abstractmethod
    async def renew(self, owner: str, held: list[tuple[str, int]],
                    lease_seconds: float) -> None:
        """Extend the leases of the attempts `owner` still answers for (its slots' jobs, and
        ended ones not written yet), (job id, token) each, in one statement; a stale token
        changes nothing. A running job of `owner` left out (a claim that committed but whose
        answer never reached a slot) keeps its lease, which expires: `recover` then
        re-queues it as it does any expired lease."""

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """The pool's writes of one turn (note, finish, claim), committed together where the
        backend gains by it: SQLite makes them one transaction, so one commit instead of
        one per statement, and a block that raises leaves none of them. This default runs
        each statement on its own (committed as it returns), as the calls do outside a
        batch. Only the caller's own task may use the store inside its block."""
        yield

    atomic_batch = False  # True where a batch is one transaction (SQLite)

    @abc.abstractmethod
    async def finish(self, outcomes: list[Outcome], max_crashes: int) -> dict[str, JobState]:
        """Record ended attempts in one transaction; a stale token changes nothing. Each job
        is left in the state `rules.after_attempt` says (the retry, dead and crash rules,
        stated once in store/rules.py): a failure goes `retrying` (to run again at its
        `retry_at`) or `dead` once the job has failed `max_attempts` times or crashed
        `max_crashes` times. A success's `artifacts` are recorded in the same transaction
        (none for a stale outcome), and its continuation (`then`) goes in with it when the job
        succeeded and no cancel was asked for it, as Store.spawn inserts a child. Returns the
        state each job was left in, for the outcomes that were not stale."""

    # -- artifacts (scholarsource/artifacts.py) ---------------------------------------------
    @abc.abstractmethod
    async def artifacts_of(self, job_ids: list[str]) -> dict[str, list[Artifact]]:
        """The artifacts of each of these jobs that has any, by name (the pool's side: no
        tenant; a child's `ctx.parent_artifacts` reads its parents' with it)."""

    @abc.abstractmethod
    async def artifact_bytes(self) -> int:
        """The size of every artifact recorded, together (kept as a running total: no
        scan)."""

    @abc.abstractmethod
    async def kept_attempts(self, job_ids: list[str]) -> dict[str, set[int]]:
        """For each of these jobs, the attempts whose directories must stay: those that
        hold its artifacts, and the one running now. A job not in the answer keeps none."""

    @abc.abstractmethod
    async def graves(self, limit: int) -> list[str]:
        """Ids of deleted jobs (pruned, purged) whose artifact files are still to delete:
        deleting a job's artifact rows records it, in the same transaction."""

    @abc.abstractmethod
    async def bury(self, job_ids: list[str]) -> None:
        """Forget these graves: their files are gone."""

    @abc.abstractmethod
    async def note(self, notes: list[Note]) -> None:
        """Record progress and log lines in one transaction; stale tokens are ignored."""

    @abc.abstractmethod
    async def spawn(self, spawns: list[Spawn], policy: QuotaPolicy) -> None:
        """Insert the children running attempts created, in one transaction: only those
        whose parent still runs under the spawn's token with no cancel asked; an id already
        there (the same child from an earlier attempt) is left as it is. Each child joins
        its parent's workflow, and a parent that had none becomes the root of its own
        (workflow_id = its id). A sibling in `depends_on` that is gone is left out. A
        child past its tenant's or the server's max_queued (`policy`, with the store's
        overrides) goes in `cancelled` with error code quota_exceeded."""

    @abc.abstractmethod
    async def cancel_requested(self, owner: str) -> list[tuple[str, int]]:
        """(job id, token) of the owner's running jobs that a client asked to cancel."""

    @abc.abstractmethod
    async def requeue(self, job_ids_tokens: Sequence[tuple[str, int]], cause: str) -> int:
        """Put running attempts back in the queue; an interruption is not charged. Returns
        how many were still running under those tokens."""

    @abc.abstractmethod
    async def recover(self, owner: str, *, max_crashes: int, box: str | None = None,
                      culprit: tuple[str, int] | None = None) -> int:
        """Re-queue running jobs whose pool is gone; returns how many.

        Without `box` (the periodic sweep of every pool): the jobs whose lease expired,
        whoever owns them: their pool stopped renewing (it hung, or its box died). With
        `box` (a pool starting as `owner`): at once, the jobs of the other owners of this
        box (ids that start with `box`, store/owner.py), whose pool died (its master saw
        it, or the whole server restarted); their pool rows are dropped, with those of pools
        silent for POOL_FORGET_SECONDS. Another box's jobs are never taken while their lease
        runs: only its pool can tell it is alive.

        Charges (`rules.after_lost_pool`): each re-queued attempt counts as a crash of its
        job, not a failure (error_code pool_died at start, lease_expired in the sweep), and a
        job reaching `max_crashes` goes dead. With `culprit` (job id, token), the attempt the
        dead pool was handling as it died, that attempt alone is charged and the others are
        re-queued uncharged (interrupted)."""

    @abc.abstractmethod
    async def publish_tasks(self, tasks: list[TaskDefaults]) -> None:
        """Replace the published registry with `tasks` (the pool does this at boot)."""

    @abc.abstractmethod
    async def heartbeat(self, info: PoolInfo) -> None:
        """Record that the pool is alive and which processes it has."""

    @abc.abstractmethod
    async def import_rows(self, carried: Carried) -> Imported:
        """Insert jobs another store held, keeping their ids, states and counts, with the
        events of those inserted, and the queue pauses and schedule states not set here
        yet, in one transaction, in order (the claim's order follows). A job that collides
        with one here (its id, idempotency key, schedule fire or live unique twin) is
        skipped with its events, so importing the same rows twice writes them once."""

    # -- schedules --------------------------------------------------------------------------
    @abc.abstractmethod
    async def schedule_states(self, tenant: str, names: list[str]) -> dict[str, ScheduleState]:
        """Each named schedule's state, with its latest job of `tenant` (one the store has
        not seen yet: unpaused, cursor None)."""

    @abc.abstractmethod
    async def fire(self, new: NewJob | None, name: str, fire_time: float) -> Job | None:
        """Handle `name`'s fires up to `fire_time` in one transaction: insert `new` (a job
        with schedule = name and scheduled_for = fire_time; None: skip the fire) unless
        the schedule is paused or that fire already has its job, and move the cursor to
        `fire_time`. Returns the job inserted, if one was."""

    @abc.abstractmethod
    async def set_paused(self, name: str, paused: bool, now: float) -> None:
        """Pause or resume a schedule. A resumed one goes on from `now`: what it missed
        while paused is not caught up."""

    # -- retention --------------------------------------------------------------------------
    @abc.abstractmethod
    async def prune(self, state: JobState, before: float, limit: int) -> int:
        """Delete up to `limit` jobs in final `state` that finished before `before` (wall
        clock), oldest first, with their events and idempotency keys, in one short
        transaction; returns how many."""

    @abc.abstractmethod
    async def count_expired(self, state: JobState, before: float) -> int:
        """How many jobs `prune` would delete with no limit (for a dry run)."""

    @abc.abstractmethod
    async def compact(self, max_pages: int) -> bool:
        """Give up to `max_pages` of the space pruning freed back to the filesystem, keeping
        some for new jobs; returns True while there is more to give back."""

    @abc.abstractmethod
    async def vacuum(self) -> None:
        """Rewrite the whole store compactly. Holds the write lock throughout: an operator's
        step for a quiet time, never the pool's."""

    # -- API keys and dashboard sessions ----------------------------------------------------
    @abc.abstractmethod
    async def create_key(self, key: ApiKey) -> None:
        """Record a new key (its digest, never the key)."""

    @abc.abstractmethod
    async def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""

    @abc.abstractmethod
    async def find_key(self, key_id: str) -> ApiKey | None:
        """The key with this id (revoked or not), or None: one probe of the primary key."""

    @abc.abstractmethod
    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        """Revoke a live key and end its dashboard sessions, in one transaction; returns the
        key as it is now (None: no such key). Revoking a revoked key changes nothing."""

    @abc.abstractmethod
    async def create_session(self, token_digest: str, key_id: str, expires_at: float,
                             now: float) -> None:
        """Start a dashboard session for a key; sessions expired by `now` go at the same time."""

    @abc.abstractmethod
    async def find_session(self, token_digest: str, now: float) -> ApiKey | None:
        """The live key of a session that has not expired by `now`, or None."""

    @abc.abstractmethod
    async def end_session(self, token_digest: str) -> None:
        """End a dashboard session (log out)."""
