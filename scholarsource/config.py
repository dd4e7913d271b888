"""The one typed, frozen configuration object and how it is layered.

Layers, lowest first: field defaults < TOML file < ``SCHOLARSOURCE_*`` environment < command-line
flags. Every key is declared once, as a field below; its metadata carries the help text that
``config.example.toml`` and ``--print-config`` repeat.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from scholarsource.errors import ConfigError
from scholarsource.limits import (
    QueueLimits,
    TaskLimits,
    TenantLimits,
    check_reservations,
    parse_queues,
    parse_tasks,
    parse_tenants,
)
from scholarsource.store.url import DatabaseUrl

ENV_PREFIX = "SCHOLARSOURCE_"
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}

_SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2,
               "MIB": 1024**2, "G": 1000**3, "GB": 1000**3, "GIB": 1024**3, "T": 1000**4,
               "TB": 1000**4, "TIB": 1024**4}


def parse_size(value: int | str) -> int:
    """Turn ``512MB``, ``1GiB`` or a plain byte count into bytes (ASCII digits and spaces
    only: a regex's digit and space classes would also read Arabic-Indic digits and
    no-break spaces)."""
    if isinstance(value, bool):
        raise ValueError("a size is a byte count or a string like '512MB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = re.fullmatch(r" *([0-9]+(?:\.[0-9]+)?) *([A-Za-z]*) *", str(value))
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (try '512MB' or '2GiB')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


_DISPLAY_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000))


def format_size(size: int) -> str:
    """Bytes for a message, in the units parse_size reads and the README defines (1 MB is
    10^6 bytes): ``512 bytes``, ``95 MB``, ``1.5 GB``."""
    for unit, factor in _DISPLAY_UNITS:
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HINT = "a duration like '90s', '30m', '12h' or '7d', or a number of seconds"


def parse_duration(value: int | float | str) -> float:
    """Turn ``90s``, ``30m``, ``12h``, ``7d`` or a plain number of seconds into seconds.

    ASCII digits only: ``re``'s ``\\d`` would also take Arabic-Indic and other digits."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not {DURATION_HINT}")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", value, re.ASCII)
        if not match:
            raise ValueError(f"{value!r} is not {DURATION_HINT}")
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not {DURATION_HINT}")
    return float(value)


def _key(help: str, **extra: Any) -> dict[str, Any]:
    return {"help": help, **extra}


_DAY = 86400.0


@dataclass(frozen=True)
class Retention:
    """How long finished jobs stay, per final state, in seconds: the `[retention]` table.
    A pruned job's events and idempotency key go with it."""

    succeeded: float = field(default=7 * _DAY, metadata=_key(
        "How long a succeeded job (and its result) stays after it finished."))
    cancelled: float = field(default=7 * _DAY, metadata=_key(
        "How long a cancelled job stays after it was cancelled."))
    dead: float = field(default=30 * _DAY, metadata=_key(
        "How long a dead job stays in the dead letters, where an operator can re-queue it."))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"retention.{f.name} must be more than zero seconds, "
                                  f"not {value!r}")


_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
CATCH_UP = ("latest", "none")


@dataclass(frozen=True)
class Schedule:
    """One `[[schedules]]` entry: a task the pool submits at each fire time, by a 5-field
    `cron` expression (in `timezone`) or `every` so many seconds (aligned to the epoch, so
    every pool computes the same fire times)."""

    name: str
    task: str
    params: dict[str, Any] = field(default_factory=dict)
    queue: str = ""  # empty: the task's own queue
    priority: int = 0
    cron: str = ""
    every: float = 0.0
    timezone: str = "UTC"
    catch_up: str = "latest"  # after downtime: run once for the latest missed fire, or not

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        if not isinstance(self.name, str) or not _SCHEDULE_NAME.fullmatch(self.name):
            raise ConfigError(f"{where}: name must be 1-64 letters, digits, '_', '.', ':' "
                              f"or '-'")
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError(f"{where}: task must name a registered task")
        try:  # TOML also has dates, times and nan, which a job's JSON params cannot carry
            json.dumps(self.params, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: params must be a table of JSON values (no dates, "
                              f"times, nan or inf)") from None
        if not isinstance(self.params, dict):
            raise ConfigError(f"{where}: params must be a table")
        if bool(self.cron) == bool(self.every):
            raise ConfigError(f"{where}: set either cron or every, not "
                              f"{'both' if self.cron else 'neither'}")
        if self.cron and (len(self.cron.split()) != 5 or not croniter.is_valid(self.cron)):
            raise ConfigError(f"{where}: cron must be 5 fields (minute hour day month "
                              f"weekday), not {self.cron!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown timezone {self.timezone!r} (an IANA name "
                              f"like 'Europe/Paris')") from None
        if self.catch_up not in CATCH_UP:
            raise ConfigError(f"{where}: catch_up must be one of {', '.join(CATCH_UP)}, "
                              f"not {self.catch_up!r}")

    @classmethod
    def from_toml(cls, raw: Any) -> Schedule:
        """One `[[schedules]]` table, checked key by key (ConfigError naming the schedule)."""
        if not isinstance(raw, dict):
            raise ConfigError("each [[schedules]] entry must be a table")
        where = f"schedule {raw.get('name', '(unnamed)')!r}"
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: "
                              f"{', '.join(sorted(known))})")
        missing = sorted({"name", "task"} - set(raw))
        if missing:
            raise ConfigError(f"{where}: {missing[0]} is required")
        values = dict(raw)
        for key in ("name", "task", "queue", "cron", "timezone", "catch_up", "priority"):
            kind, words = (int, "a whole number") if key == "priority" else (str, "a string")
            if key in values and (not isinstance(values[key], kind)
                                  or isinstance(values[key], bool)):
                raise ConfigError(f"{where}: {key} must be {words}, not {values[key]!r}")
        if "every" in values:
            try:
                values["every"] = parse_duration(values["every"])
            except ValueError:
                values["every"] = -1.0
            if values["every"] <= 0:
                raise ConfigError(f"{where}: every must be {DURATION_HINT} (more than "
                                  f"zero), not {raw['every']!r}")
        return cls(**values)


@dataclass(frozen=True)
class Config:
    """Everything `scholarsource serve` needs to know; built once by `load_config`."""

    bind: str = field(default="127.0.0.1:8000", metadata=_key(
        "Address the API listens on, HOST:PORT. Loopback by default: put a proxy in front "
        "before exposing it."))
    data_dir: str = field(default="./scholarsource-data", metadata=_key(
        "Directory for the SQLite database and runtime files (systemd's STATE_DIRECTORY when "
        "set)."))
    database: DatabaseUrl = field(default=DatabaseUrl(), metadata=_key(
        "Where the jobs live: empty for SQLite in data_dir (one box), or a PostgreSQL URL "
        "(postgresql://user:password@host/db) that several boxes share. Its password is "
        "masked wherever the setting is shown."))
    database_listen: DatabaseUrl = field(default=DatabaseUrl(), metadata=_key(
        "A PostgreSQL URL that reaches the server itself, for the one connection per pool "
        "that LISTENs for wake-ups, when `database` goes through PgBouncer in transaction "
        "mode (which cannot keep a LISTEN). Empty: `database`."))
    workers: int = field(default=0, metadata=_key(
        "API worker processes; 0 means one per CPU core (more added nothing on 2 cores and "
        "raised p99)."))
    slots: int = field(default=0, metadata=_key(
        "Job slots (one job process each); 0 sizes them from CPU cores and available RAM."))
    slots_per_core: float = field(default=1.0, metadata=_key(
        "When sizing slots from CPU: slots per core. Raise it for I/O-bound jobs."))
    memory_per_job: int = field(default=512 * 1024**2, metadata=_key(
        "Memory one job is expected to need, bytes or '512MB'; sizing divides RAM by it.",
        size=True))
    memory_reserve: int = field(default=1024**3, metadata=_key(
        "Memory left for the OS, the API and the page cache, never planned for jobs.",
        size=True))
    task_modules: tuple[str, ...] = field(default=(), metadata=_key(
        "Python modules whose @task functions may run, e.g. [\"myapp.jobs\"]. Built-in tasks "
        "are always registered. Nothing a request names is ever imported."))
    durability: str = field(default="normal", metadata=_key(
        "'normal' (synchronous=NORMAL: a power cut may lose the last commits, never corrupt) "
        "or 'full' (synchronous=FULL: every acknowledged commit survives a power cut).",
        choices=("normal", "full")))
    max_attempts: int = field(default=1, metadata=_key(
        "Attempts a job gets when neither its task nor its submit says otherwise."))
    lease_seconds: float = field(default=30.0, metadata=_key(
        "How long a claimed job stays owned without renewal; after that a crashed pool's job "
        "runs again."))
    poll_interval: float = field(default=0.5, metadata=_key(
        "Seconds between the dispatcher's fallback polls; submits wake it at once anyway."))
    grace_period: float = field(default=30.0, metadata=_key(
        "On SIGTERM, seconds running jobs get to finish before they are stopped and "
        "re-queued."))
    cancel_grace: float = field(default=10.0, metadata=_key(
        "Seconds a running job has to honour a cancel before its slot process is killed."))
    kill_grace: float = field(default=3.0, metadata=_key(
        "When a job times out its process gets SIGTERM, then SIGKILL after this many "
        "seconds."))
    backoff_base: float = field(default=1.0, metadata=_key(
        "Seconds before the first retry of a failed attempt; each later retry waits twice as "
        "long (with jitter: between half and all of it), up to backoff_max."))
    backoff_max: float = field(default=300.0, metadata=_key(
        "Longest wait between two attempts, seconds."))
    max_crashes: int = field(default=3, metadata=_key(
        "Times a job's process may die under it (segfault, OOM kill, os._exit) or the pool "
        "with it, before the job is dead: a poison job never loops."))
    max_jobs_per_slot: int = field(default=0, metadata=_key(
        "Replace a slot's process after it ran this many jobs (0: never), to contain leaks."))
    max_slot_memory: int = field(default=0, metadata=_key(
        "Replace a slot's process between jobs once its idle RSS is above this, bytes or "
        "'1GB' (0: never).", size=True))
    pool_stall_timeout: float = field(default=60.0, metadata=_key(
        "The master kills and restarts a pool whose dispatcher has not checked in for this "
        "many seconds (a hung pool, not just a dead one)."))
    fetch_allow_private: bool = field(default=False, metadata=_key(
        "Let the built-in fetch task reach loopback, private and link-local addresses. Off by "
        "default: any API client can name fetch and a URL."))
    max_body_bytes: int = field(default=1024**2, metadata=_key(
        "Largest request body the API accepts, bytes or '1MiB'; larger ones get 413.",
        size=True))
    max_result_bytes: int = field(default=16 * 1024**2, metadata=_key(
        "Largest result a job may return, as JSON; a larger one fails the attempt with "
        "result_too_large (results live in the database).", size=True))
    # Artifacts (issue 14): files a task leaves as its job's results (scholarsource/artifacts.py).
    artifacts_dir: str = field(default="", metadata=_key(
        "Where artifacts live (one directory per job and attempt); empty: data_dir/artifacts. "
        "With several boxes on one PostgreSQL store, point every box at the same shared "
        "storage: a box serves only the files it can see."))
    max_artifact_bytes: int = field(default=1024**3, metadata=_key(
        "Most bytes of files one attempt may leave as artifacts, bytes or '1GiB'; more fails "
        "the attempt with artifact_too_large (a failure like any other: retried while "
        "attempts are left).", size=True))
    artifacts_budget_bytes: int = field(default=0, metadata=_key(
        "Disk all artifacts together may use, bytes or '100GB' (0: no budget of its own). "
        "Once it is spent, or the artifacts' disk has less than max_artifact_bytes free (on "
        "a disk under 20 x max_artifact_bytes, a twentieth of it), the pool starts no job "
        "(they wait queued; /api/health says why) until retention frees room. Keep slots x "
        "max_artifact_bytes of room between it and the disk's size: running jobs may each "
        "still write that much.", size=True))
    artifacts_sweep_interval: float = field(default=300.0, metadata=_key(
        "Seconds between two sweeps of the artifacts directory, which delete the attempt "
        "directories no job keeps (a success whose write answer was lost leaves its files to "
        "it). The pool also sweeps when it starts; a sweep with nothing stale lists the "
        "directories and asks the store once."))
    busy_timeout: float = field(default=5.0, metadata=_key(
        "Seconds a database write waits for the write lock before giving up."))
    log_level: str = field(default="info", metadata=_key(
        "debug, info, warning or error.", choices=("debug", "info", "warning", "error")))
    log_format: str = field(default="text", metadata=_key(
        "'text' (one readable line per record) or 'json' (one JSON object per line, for log "
        "shippers), for every process.", choices=("text", "json")))
    access_log: bool = field(default=False, metadata=_key(
        "Log one line per HTTP request: method, path (never the query string), status, "
        "duration, client. Off by default: the proxy in front usually logs requests, and a "
        "line costs a fifth of a small request's CPU."))
    job_log: bool = field(default=True, metadata=_key(
        "Log one line per job state change: job id, task, queue, attempt, duration, outcome "
        "(never params or results)."))
    # What a submit may ask for: every client gets these bounds.
    default_timeout: float = field(default=3600.0, metadata=_key(
        "Seconds a job may run when neither its submit nor its task sets a timeout. Finite, "
        "so a job that hangs frees its slot."))
    max_timeout: float = field(default=7 * 86400.0, metadata=_key(
        "Longest timeout a submit may ask for, seconds (above: 422). A task declaring a "
        "longer one stops the pool at boot."))
    max_params_depth: int = field(default=32, metadata=_key(
        "Deepest nesting of lists and objects in a job's params (and in any JSON body, "
        "one level more for the body itself); deeper: 422 params_too_deep."))
    max_params_bytes: int = field(default=1024**2, metadata=_key(
        "Largest params a job may carry, bytes of JSON as stored; larger: 422 "
        "params_too_large.", size=True))
    builtin_tasks: tuple[str, ...] = field(default=("safe",), metadata=_key(
        "Built-in tasks clients may submit: \"all\", \"safe\" (noop, sleep, echo, fetch, "
        "fail), \"none\", or a list of names. \"all\" adds cpu, memory and crash, which "
        "let any client burn a core, fill memory or kill a slot.", keyword_or_list=True))
    # The HTTP edge (issue 10): what a request must look like before any route sees it.
    allowed_hosts: tuple[str, ...] = field(default=(), metadata=_key(
        "Host header values the API answers, e.g. [\"jobs.example.com\"] (a name allows any "
        "port; \"name:port\" only that port); others get 421 host_not_allowed, which stops "
        "DNS rebinding. A loopback bind always allows its own address, localhost, 127.0.0.1 "
        "and [::1]; any other bind must set it, or serve refuses to start. [\"*\"] allows "
        "any Host: only behind a proxy that checks it."))
    # Who may call the API (issue 13): API keys, roles and the dashboard's login.
    auth: str = field(default="auto", metadata=_key(
        "'keys' (every request but /api/health needs `Authorization: Bearer KEY` or a "
        "dashboard login; make keys with `scholarsource keys create`), 'none' (anyone who "
        "reaches the port may do anything) or 'auto': none on a loopback bind, keys on any "
        "other.", choices=("auto", "keys", "none")))
    allow_unauthenticated_remote: bool = field(default=False, metadata=_key(
        "Let auth = 'none' serve on a bind other machines can reach. Off: serve refuses to "
        "start (exit code 2) rather than hand every job to anyone on the network."))
    session_ttl: float = field(default=12 * 3600.0, metadata=_key(
        "Seconds a dashboard login lasts before the key is asked for again."))
    secure_cookies: bool = field(default=False, metadata=_key(
        "Mark the dashboard's session cookie Secure (sent over HTTPS only): set it when a "
        "TLS proxy fronts the server. The server speaks plain HTTP and trusts no "
        "X-Forwarded-Proto to say otherwise."))
    max_header_bytes: int = field(default=32 * 1024, metadata=_key(
        "Largest request head (request line and headers) the API reads, bytes or '32KiB'; "
        "a larger one gets 431 (414 for a request line alone) and its connection closed.",
        size=True))
    max_headers: int = field(default=100, metadata=_key(
        "Most header lines in one request; more get 431."))
    header_timeout: float = field(default=10.0, metadata=_key(
        "Seconds a connection has to send a whole request head; a slower one is closed "
        "(408), so slow or stalled clients cannot hold connections open."))
    search_scan_rows: int = field(default=10_000, metadata=_key(
        "How many jobs one page of a text search (GET /api/jobs?search=) reads at most, "
        "newest first; the next page carries on from there. Bounds the cost of a search "
        "whatever the size of the history."))
    events_interval: float = field(default=0.25, metadata=_key(
        "Seconds between an API worker's reads of job events for its open event streams "
        "(GET /api/jobs/{id}/events): one statement per read for all of them."))
    events_buffer: int = field(default=1000, metadata=_key(
        "Most events one event stream may hold for a client that reads slowly; one that "
        "falls further behind is closed and resumes with Last-Event-ID, so no client holds "
        "up the others or the worker's memory."))
    compat_task: str = field(default="", metadata=_key(
        "The task a POST /api/submit body without a `task` field runs, the body being its "
        "params (the existing frontend's form); empty: such a body is refused with 422."))
    compat_concurrency_key: str = field(default="", metadata=_key(
        "A field of that form (e.g. \"user_id\"), taken out of its params, whose value is "
        "the job's concurrency_key: one user's jobs run one at a time without a change to "
        "the frontend; empty: none."))
    max_cache_ttl: float = field(default=30 * 86400.0, metadata=_key(
        "Most seconds a submit's cache_ttl may ask for (a month)."))
    retention: Retention = field(default_factory=Retention, metadata=_key(
        "How long finished jobs stay, per final state ([retention] succeeded, cancelled, "
        "dead; SCHOLARSOURCE_RETENTION_DEAD=30d...); the pool deletes older ones, with "
        "their events and idempotency keys, in small batches.", table=Retention))
    schedules: tuple[Schedule, ...] = field(default=(), metadata=_key(
        "Periodic jobs, as [[schedules]] tables in the config file (name, task, params, "
        "queue, priority, cron + timezone or every, catch_up): the pool submits one job per "
        "fire time, never two, also across restarts and reloads.", array=Schedule))
    # Which queued job may start (pool/policy.py): TOML tables only, one per name.
    queues: dict[str, QueueLimits] = field(default_factory=dict, metadata=_key(
        "Per-queue limits, one [queues.NAME] table each: max_running (at most N of its jobs "
        "run at once) and reserved (N slots only this queue may use). A queue without a "
        "table shares the slots left.", named=parse_queues))
    tasks: dict[str, TaskLimits] = field(default_factory=dict, metadata=_key(
        "Per-task overrides, one [tasks.NAME] table each: rate_limit (\"100/m\", \"10/s\", "
        "\"500/h\"), at most that many starts in any such window across the whole pool.",
        named=parse_tasks))
    tenants: dict[str, TenantLimits] = field(default_factory=dict, metadata=_key(
        "Per-tenant limits, one [tenants.NAME] table each: rate (submits, \"1000/h\", a "
        "token bucket every API worker shares), max_queued (most non-final jobs) and weight "
        "(its share of slots among tenants waiting at one priority; 1 by default).",
        named=parse_tenants))
    # Quotas and batches (issue 13): every submit meets these, in its own transaction.
    max_queued: int = field(default=1_000_000, metadata=_key(
        "Most jobs not yet finished (scheduled, queued, running, retrying) the whole server "
        "holds, all tenants together; past it a submit gets 429 quota_exceeded, so that a "
        "flood meets this limit before a full disk. A [tenants.NAME] max_queued caps one "
        "tenant."))
    max_batch: int = field(default=1000, metadata=_key(
        "Most jobs one POST /api/jobs/batch may carry; more: 422 batch_too_large."))
    max_batch_body_bytes: int = field(default=16 * 1024**2, metadata=_key(
        "Largest POST /api/jobs/batch body, bytes or '16MiB' (other routes keep "
        "max_body_bytes); larger: 413.", size=True))
    # Dependencies and workflows (issue 14).
    max_parents: int = field(default=100, metadata=_key(
        "Most jobs one job may depend on (depends_on, or a workflow step's after); more: "
        "422 too_many_parents."))
    max_workflow_steps: int = field(default=500, metadata=_key(
        "Most steps one POST /api/workflows may create; more: 422 too_many_steps."))
    # Fan-out from inside a task (issue 14: tasks/fanout.py).
    max_children: int = field(default=10_000, metadata=_key(
        "Most jobs one attempt of a task may create with ctx.submit (and so most a "
        "ctx.continue_with may wait for); one more raises ChildRefused in the task."))

    def __post_init__(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, "
                                  f"not {getattr(self, f.name)!r}")
        for name in ("workers", "slots"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} cannot be negative (0 means: size automatically)")
        for name in ("max_attempts", "max_crashes", "max_params_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.max_jobs_per_slot < 0:
            raise ConfigError("max_jobs_per_slot cannot be negative (0 means: never)")
        if self.backoff_max < self.backoff_base:
            raise ConfigError("backoff_max cannot be less than backoff_base")
        for name in ("lease_seconds", "poll_interval", "busy_timeout", "slots_per_core",
                     "pool_stall_timeout", "memory_per_job", "max_body_bytes",
                     "max_result_bytes", "default_timeout", "max_timeout",
                     "max_params_bytes", "max_artifact_bytes"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, not {value!r}")
        for name in ("grace_period", "cancel_grace", "kill_grace", "backoff_base",
                     "backoff_max"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be zero or more seconds, not {value!r}")
        if not math.isfinite(self.artifacts_sweep_interval) or \
                self.artifacts_sweep_interval <= 0:
            raise ConfigError(f"artifacts_sweep_interval must be a positive number of seconds, "
                              f"not {self.artifacts_sweep_interval!r}")
        if self.default_timeout > self.max_timeout:
            raise ConfigError("default_timeout cannot be more than max_timeout")
        keywords = {"all", "safe", "none"} & set(self.builtin_tasks)
        if keywords and len(self.builtin_tasks) > 1:
            raise ConfigError(f"builtin_tasks: {sorted(keywords)[0]!r} stands alone, not in "
                              f"a list of names")
        if self.search_scan_rows < 1:
            raise ConfigError("search_scan_rows must be at least 1")
        if not math.isfinite(self.events_interval) or self.events_interval <= 0:
            raise ConfigError(f"events_interval must be a positive number, not "
                              f"{self.events_interval!r}")
        if self.events_buffer < 1:
            raise ConfigError("events_buffer must be at least 1")
        for name in ("max_queued", "max_batch", "max_batch_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        self.host_port()
        if self.max_header_bytes < 1024 or self.max_headers < 1:
            raise ConfigError("max_header_bytes must be at least 1KiB and max_headers at least 1")
        if not math.isfinite(self.header_timeout) or self.header_timeout <= 0:
            raise ConfigError(f"header_timeout must be a positive number, not "
                              f"{self.header_timeout!r}")
        if not math.isfinite(self.session_ttl) or self.session_ttl <= 0:
            raise ConfigError(f"session_ttl must be a positive number of seconds, not "
                              f"{self.session_ttl!r}")
        if not math.isfinite(self.max_cache_ttl) or self.max_cache_ttl <= 0:
            raise ConfigError(f"max_cache_ttl must be a positive number, not "
                              f"{self.max_cache_ttl!r}")
        names = [schedule.name for schedule in self.schedules]
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise ConfigError(f"schedule {twice!r} is defined twice")
        if self.slots:  # sized from the machine otherwise: the pool checks at start
            check_reservations(self.queues, self.slots)
        # Layers hand in plain text: make it the masking type (ConfigError if no store).
        object.__setattr__(self, "database", DatabaseUrl(self.database))
        object.__setattr__(self, "database_listen",
                           DatabaseUrl(self.database_listen, "database_listen"))
        if self.database_listen and not self.database:
            raise ConfigError("database_listen needs database: it is where the pools of a "
                              "PostgreSQL store listen, and SQLite has none")
        for name in ("max_parents", "max_workflow_steps", "max_children"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")

    def host_port(self) -> tuple[str, int]:
        """Split `bind` into host and port, or raise ConfigError."""
        host, sep, port = self.bind.rpartition(":")
        valid_port = port.isascii() and port.isdigit() and 0 <= int(port) < 65536
        if not sep or not host or not valid_port:
            raise ConfigError(f"bind must be HOST:PORT, not {self.bind!r}")
        return host.strip("[]"), int(port)

    @property
    def db_path(self) -> Path:
        """The SQLite database file inside the data directory."""
        return Path(self.data_dir) / "scholarsource.db"

    @property
    def artifacts_path(self) -> Path:
        """The directory that holds every job's artifacts."""
        return Path(self.artifacts_dir) if self.artifacts_dir else Path(self.data_dir) / "artifacts"

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for --print-config and the bench's JSON."""
        values = asdict(self)  # [retention] and [[schedules]] become plain dicts
        for name in ("queues", "tasks", "tenants"):  # [queues.NAME]...: None means unset
            values[name] = {key: {k: str(v) if k in ("rate_limit", "rate") else v
                                  for k, v in vars(table).items() if v is not None}
                            for key, table in getattr(self, name).items()}
        values["database"] = str(self.database)  # masked
        values["database_listen"] = str(self.database_listen)
        return values


_TYPES = get_type_hints(Config)


@dataclass(frozen=True)
class _Source:
    """One layer's values, and how its keys are written there (for messages)."""

    values: Mapping[str, Any]
    where: str  # "in FILE", "in the environment", "on the command line"
    spell: Callable[[str], str]  # a field name as the user wrote it in this layer
    text: bool  # values arrive as text (environment, flags), not typed as in TOML


def _expected(name: str) -> str:
    """What a field takes, in words, for the message about a value of the wrong kind."""
    kind = _TYPES[name]
    if Config.__dataclass_fields__[name].metadata.get("size"):
        return "a byte count or a size like '512MB' or '2GiB'"
    if kind == tuple[str, ...]:
        return 'a list of strings, like ["myapp.jobs"]'
    return {bool: "true or false", int: "a whole number", float: "a number"}.get(kind,
                                                                               "a string")


def _coerce(name: str, raw: Any, from_text: bool) -> Any:
    """Convert one raw value (TOML value or env/flag text) to the field's type; ValueError
    if it is of the wrong kind."""
    f = Config.__dataclass_fields__[name]
    kind = _TYPES[name]
    if f.metadata.get("size"):
        return parse_size(raw)
    if kind is bool:
        if isinstance(raw, str) and from_text and raw.lower() in _BOOLEANS:
            return _BOOLEANS[raw.lower()]
        if not isinstance(raw, bool):
            raise ValueError
        return raw
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError
        return int(raw)
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError
        return float(raw)
    if kind == tuple[str, ...]:
        # "a, b" from text; a bare TOML string too where the field is a keyword or a list
        if isinstance(raw, str) and (from_text or f.metadata.get("keyword_or_list")):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list | tuple) or not all(isinstance(x, str) for x in raw):
            raise ValueError
        return tuple(raw)
    if not isinstance(raw, str):
        raise ValueError
    return raw.lower() if f.metadata.get("choices") else raw


def _table_key(name: str, raw: Any, source: _Source) -> dict[str, Any] | None:
    """A table's keys (`[retention]` in TOML, SCHOLARSOURCE_RETENTION_DEAD in the
    environment) as {table: {key: raw}}; None if `name` is no table's."""
    for table, f in Config.__dataclass_fields__.items():
        if "table" not in f.metadata:
            continue
        if name == table:
            if source.text or not isinstance(raw, dict):
                example = ENV_PREFIX + table.upper() + "_<KEY>" if source.text else \
                    f"[{table}]"
                raise ConfigError(f"{source.spell(name)} {source.where} must be a table: "
                                  f"set its keys as {example}")
            return {table: raw}
        if source.text and name.startswith(table + "_"):
            return {table: {name[len(table) + 1:]: raw}}
    return None


def _layer_table(values: dict[str, Any], table: str, raws: Mapping[str, Any],
                 source: _Source) -> None:
    """Check and parse one table's keys (each a duration: [retention] is the only table)."""
    keys = {f.name for f in fields(Config.__dataclass_fields__[table].metadata["table"])}

    def spell(key: str) -> str:  # SCHOLARSOURCE_RETENTION_DEAD, 'retention.dead'
        return source.spell(f"{table}_{key}" if source.text else f"{table}.{key}")

    for key, raw in raws.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"; did you mean {spell(close[0])}?" if close else ""
            raise ConfigError(f"unknown setting {spell(key)} {source.where}{hint}")
        try:
            seconds = parse_duration(raw)
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            raise ConfigError(f"{spell(key)} {source.where} must be {DURATION_HINT} (more "
                              f"than zero), not {raw!r}")
        values.setdefault(table, {})[key] = seconds


def _layer_schedules(values: dict[str, Any], raw: Any, source: _Source) -> None:
    """`[[schedules]]`: an array of tables, so only a config file can hold it."""
    if source.text or not isinstance(raw, list):
        raise ConfigError(f"{source.spell('schedules')} {source.where}: write schedules as "
                          f"[[schedules]] tables in the config file")
    values["schedules"] = tuple(Schedule.from_toml(entry) for entry in raw)


def _layer(values: dict[str, Any], source: _Source) -> None:
    for name, raw in source.values.items():
        if name == "schedules":
            _layer_schedules(values, raw, source)
            continue
        named = Config.__dataclass_fields__.get(name)
        if named is not None and "named" in named.metadata:  # [queues.NAME], [tasks.NAME]
            if source.text:
                raise ConfigError(f"{source.spell(name)} {source.where}: [{name}.NAME] "
                                  f"tables are set in the config file only")
            values[name] = named.metadata["named"](raw)
            continue
        if (nested := _table_key(name, raw, source)) is not None:
            for table, raws in nested.items():
                _layer_table(values, table, raws, source)
            continue
        if name not in Config.__dataclass_fields__:
            close = difflib.get_close_matches(name, Config.__dataclass_fields__, n=1)
            hint = f"; did you mean {source.spell(close[0])}?" if close else ""
            raise ConfigError(f"unknown setting {source.spell(name)} {source.where}{hint}")
        try:
            values[name] = _coerce(name, raw, from_text=source.text)
        except ValueError:  # int("four") and friends say nothing a user can act on
            raise ConfigError(f"{source.spell(name)} {source.where} must be "
                              f"{_expected(name)}, not {raw!r}") from None


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the Config from defaults, a TOML file, the environment and flag overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    # systemd's StateDirectory= exports STATE_DIRECTORY: the default data directory there.
    if env.get("STATE_DIRECTORY"):
        values["data_dir"] = env["STATE_DIRECTORY"].split(":")[0]
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        _layer(values, _Source(data, f"in {path}", repr, text=False))
    from_env = {key[len(ENV_PREFIX):].lower(): val for key, val in env.items()
                if key.startswith(ENV_PREFIX) and key not in (ENV_PREFIX + "CONFIG",
                                                              ENV_PREFIX + "URL")}
    _layer(values, _Source(from_env, "in the environment",
                           lambda name: ENV_PREFIX + name.upper(), text=True))
    _layer(values, _Source({k: v for k, v in (overrides or {}).items() if v is not None},
                           "on the command line",
                           lambda name: "--" + name.replace("_", "-"), text=True))
    if "retention" in values:
        values["retention"] = Retention(**values["retention"])
    try:
        return Config(**values)
    except TypeError as exc:  # pragma: no cover - every key was checked above
        raise ConfigError(str(exc)) from None

