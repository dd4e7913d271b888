"""Slots: one job process each, so killing one job's process touches no other.

Each slot's process is the single worker of its own ProcessPoolExecutor. A stdlib executor
breaks as a whole when one of its processes dies (BrokenProcessPool); with one process per
executor, a kill (cancel, timeout, crash) breaks only that slot, which is then replaced.

Attempts do not travel through the executor's call queue: its feeder and manager threads
cost the pool ~215 µs of CPU per call (`python bench/executor.py`). Instead the executor runs
one long call per process, `serve_slot`, which takes attempts from the slot's own duplex
pipe and answers on it (~40 µs per round trip). The executor still owns the process: it
starts it, and the future of that long call reports the process's death at once.

Start method: `forkserver`. Plain `fork` would copy the pool process mid-flight (its event
loop, its open database connection, the executors' threads) into every slot, which is
unsafe with threads. `spawn` is safe but pays a fresh interpreter plus every task import per
slot. The forkserver is a clean single-threaded process that imports the task modules once
(`set_forkserver_preload`), so a replacement slot forks from it in milliseconds. It is also
what `max_tasks_per_child` would require.

Signals: the pool alone decides when a job stops. A supervisor often signals the whole
process group (systemd's KillMode=control-group, supervisord's stopasgroup, Ctrl-C in a
terminal), which includes the forkserver and every slot. The forkserver starts with those
signals blocked (a blocked signal stays blocked across exec, and the forkserver ends anyway
when the pool's alive pipe closes); a slot honours SIGTERM only once its pool has raised the
slot's stop flag (a timeout: SIGTERM, then SIGKILL) and ignores the others, so a stop signal
to the group reaches the running jobs only through the pool's grace period. (The slot's
SIGTERM handler is Python code: a task busy in one long C call ends at its return, or by the
SIGKILL that follows kill_grace later.)
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import resource
import signal
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from scholarsource import logs
from scholarsource.artifacts import paths as artifact_paths
from scholarsource.config import Config
from scholarsource.errors import Retry, UnknownTaskError
from scholarsource.pool import artifacts
from scholarsource.pool.messages import Attempt, Ended, Report, Spawned, send
from scholarsource.store.base import Claim, ErrorCode, TaskDefaults
from scholarsource.store.url import DatabaseUrl
from scholarsource.tasks.context import CancelFlag, Context
from scholarsource.tasks.fanout import Continuation, Fanout
from scholarsource.tasks.jsontext import NotJson, printable, to_json
from scholarsource.tasks.registry import TaskSpec, load_tasks

log = logging.getLogger("scholarsource.pool")

# What a supervisor sends to stop or reload; see the module docstring.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP})

# What a slot sends of a failed attempt: enough to read, never a flood for the pool's pipe.
_MAX_ERROR_CHARS = 4000
_MAX_DETAIL_CHARS = 64_000

# Set in each slot process by `_init_slot`.
_conn: Connection | None = None
_cancel_flag: CancelFlag | None = None
_stop_flag: CancelFlag | None = None
_max_result_bytes = 0
_artifacts_root: Path | None = None
_max_artifact_bytes = 0
_peak: PeakRss | None = None
_tasks: dict[str, TaskSpec] = {}
_defaults: dict[str, TaskDefaults] = {}
_submit_rules: Config | None = None


class PeakRss:
    """This process's peak RSS per attempt: Linux's high-water mark of its RSS, which writing
    "5" to clear_refs resets (under a µs with the file kept open). Sampling from outside
    would miss the peak of a short job. Without clear_refs there is no peak per attempt.

    The mark is read as getrusage's ru_maxrss, with the CPU time (`_usage`), not from
    /proc/self/status's VmHWM: the same figure, without ~7 µs of the kernel writing out the
    whole status file each attempt. For RUSAGE_SELF the kernel reports the larger of that
    mark and a figure it keeps only from an exec or the death of the whole process, and a
    slot is forked from the forkserver with none and never execs, so the two agree."""

    def __init__(self) -> None:
        self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY)

    def reset(self) -> None:
        os.write(self._clear, b"5")


@dataclass(frozen=True)
class SlotSettings:
    """What a slot process needs from the config (it loads none itself)."""

    task_modules: tuple[str, ...] = ()
    max_result_bytes: int = 16 * 1024**2
    log_level: str = "info"
    log_format: str = "text"
    builtin_tasks: tuple[str, ...] = ("all",)
    artifacts_dir: str = ""  # absolute: a task may change its working directory
    max_artifact_bytes: int = 1024**3
    # What ctx.submit checks a child against, as the API would (no database URL: a slot
    # opens no store, and task code need not see its password).
    submit_rules: Config = field(default_factory=Config)

    @classmethod
    def of(cls, config: Config) -> SlotSettings:
        rules = dataclasses.replace(config, database=DatabaseUrl(),
                                    database_listen=DatabaseUrl())
        return cls(config.task_modules, config.max_result_bytes, config.log_level,
                   config.log_format, config.builtin_tasks,
                   str(config.artifacts_path.absolute()), config.max_artifact_bytes, rules)


def _init_slot(conn: Connection, cancel_flag: CancelFlag, stop_flag: CancelFlag,
               lifeline: Connection, settings: SlotSettings) -> None:
    """Runs once in each slot process, before its first job."""
    global _conn, _cancel_flag, _stop_flag, _max_result_bytes, _peak, _submit_rules
    global _artifacts_root, _max_artifact_bytes
    _conn, _cancel_flag, _max_result_bytes = conn, cancel_flag, settings.max_result_bytes
    _artifacts_root = Path(settings.artifacts_dir) if settings.artifacts_dir else None
    _max_artifact_bytes = settings.max_artifact_bytes
    _stop_flag = stop_flag
    # Task code logs with its own loggers: give them the server's level and format too.
    logs.setup(settings.log_level, settings.log_format, name="")
    logs.set_role("slot")
    try:
        _peak = PeakRss()
    except OSError:
        _peak = None
    # A handler, not SIG_IGN: a task's subprocesses get the default actions back at exec.
    # The signals that are only ever ignored restart the system calls they interrupt, so
    # task code never sees EINTR from them; SIGTERM interrupts, so that a timeout's TERM
    # ends a task blocked in a read at once.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)
        if sig != signal.SIGTERM:
            signal.siginterrupt(sig, False)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked in the forkserver
    threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True,
                     name="lifeline").start()
    # The slot runs only what the pool published: a job queued for a built-in before the
    # operator stopped exposing it fails as an unknown task instead of running.
    _tasks.update(load_tasks(settings.task_modules, settings.builtin_tasks))
    _defaults.update({name: spec.defaults() for name, spec in _tasks.items()})
    _submit_rules = settings.submit_rules


def _on_stop_signal(signum: int, frame: object) -> None:
    """Die of SIGTERM only when the pool asked for it; see the module docstring."""
    if signum == signal.SIGTERM and _stop_flag is not None and _stop_flag.value:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _start_forkserver() -> None:
    """Start the forkserver and multiprocessing's resource tracker, unless they run, with the
    stop signals blocked (see the module docstring). Blocked in this thread only, and
    briefly: a signal meant for the pool waits and is delivered, not lost."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        multiprocessing.resource_tracker.ensure_running()
        # The tracker's start unblocks SIGINT and SIGTERM on its way out: block them again.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _watch_lifeline(lifeline: Connection) -> None:
    """End this process as soon as the pool is gone.

    Slots are children of the forkserver, not of the pool, and the forkserver outlives the
    pool while any slot lives, so PDEATHSIG cannot help. Only the pool holds the write end of
    the lifeline pipe: when the pool dies (even by kill -9), the read blocks no longer and
    sees EOF. An orphaned slot must not run on: its job runs again under the next pool.
    """
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)


def serve_slot() -> None:
    """The one long call a slot process runs: attempts in, results out, until the pool
    closes the pipe."""
    assert _conn is not None
    while True:
        try:
            attempt: Attempt = _conn.recv()
        except EOFError:
            return
        if _peak is not None:
            _peak.reset()
        cpu, _ = _usage()
        ended = run_attempt(attempt)
        cpu_after, peak = _usage()
        send(_conn, ended._replace(peak=None if _peak is None else peak,
                                   cpu=round(cpu_after - cpu, 6)))


def _usage() -> tuple[float, int]:
    """CPU time of this process and of the children it has waited for (a task's
    subprocesses), user and system; and this process's peak RSS in bytes since the last
    PeakRss.reset (see PeakRss)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return cpu, own.ru_maxrss * 1024


def run_attempt(attempt: Attempt) -> Ended:
    """Run one attempt inside a slot; how it ended, in plain strings and numbers whatever the
    task did, so that the message to the pool is small and flat (serve_slot adds the peak
    RSS and CPU time), with the files it left if it called ctx.artifact."""
    conn, job_id, token = _conn, attempt.job_id, attempt.token

    def report(kind: str, data: dict[str, Any]) -> None:
        if conn is not None:
            send(conn, Report(job_id, token, kind, data))

    def spawned(key: int | str, body_json: str) -> None:
        if conn is not None:
            send(conn, Spawned(job_id, token, int(key), body_json))

    fanout = Fanout(job_id, _defaults, _submit_rules or Config(), spawned)
    parent_files = (artifact_paths(_artifacts_root, attempt.parent_artifacts)
                    if attempt.parent_artifacts and _artifacts_root else None)
    ctx = Context(job_id, attempt.attempt, token, report, _cancel_flag, _artifacts_root,
                  parent_artifacts=parent_files, fanout=fanout)
    ended = _call(attempt, ctx)
    if ctx.artifacts_dir is None:
        return ended
    return artifacts.settle(ended, ctx.artifacts_dir, _max_artifact_bytes)


def _call(attempt: Attempt, ctx: Context) -> Ended:
    """Call the task with `ctx`.

    The params travel as the store's JSON text and are decoded here, and the result is
    encoded here: a job's data, however deep or odd, fails its own attempt in its own
    process, never the pool's loop."""
    token = attempt.token
    try:
        params = json.loads(attempt.params_json)
        parents = None if attempt.parents_json is None else json.loads(attempt.parents_json)
    except (ValueError, RecursionError) as exc:
        code = ErrorCode.BAD_PARAMS
        return Ended(token, code, code.explain(f"the job's params cannot be decoded "
                                               f"({_describe(exc)})"))
    ctx.parent_results = parents or {}
    try:
        spec = _tasks.get(attempt.task)
        if spec is None:
            raise UnknownTaskError(f"no task named {attempt.task!r} is registered")
        result = spec.fn(ctx, **params)
    except Retry as exc:
        try:
            after = None if exc.after is None else float(exc.after)
        except (TypeError, ValueError):
            return Ended(token, ErrorCode.TASK_ERROR,
                         f"Retry(after={exc.after!r:.100}) is not a number of seconds")
        return Ended(token, ErrorCode.RETRY, _describe(exc, plain=True), after=after)
    except (Exception, SystemExit) as exc:  # sys.exit() in a task is the task's failure
        detail = printable(traceback.format_exc()[-_MAX_DETAIL_CHARS:])
        return Ended(token, ErrorCode.TASK_ERROR, _describe(exc), detail)
    if result is None:
        return Ended(token, None, None)
    then = None
    if isinstance(result, Continuation):
        then = json.dumps(result.body)
        result = result.result()
    try:
        encoded = to_json(result)
    except NotJson as exc:
        code = ErrorCode.RESULT_NOT_JSON
        return Ended(token, code, code.explain(f"the result has no JSON form: {exc}"))
    size = len(encoded.encode("utf-8"))
    if size > _max_result_bytes:
        code = ErrorCode.RESULT_TOO_LARGE
        return Ended(token, code, code.explain(f"{size} bytes of JSON, more than "
                                               f"max_result_bytes ({_max_result_bytes})"))
    return Ended(token, None, encoded, then=then)


def _describe(exc: BaseException, plain: bool = False) -> str:
    """"Type: message" (or the message alone, with `plain`), cut to a readable length; an
    exception whose str() fails is still described."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    if not plain:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return printable(text[:_MAX_ERROR_CHARS])


class Slot:
    """One job process: its pipe, its cancel flag, and the attempt it runs.

    The dispatcher and the admission read its fields; only its own methods change them
    (run, complete, release, sample, recycle, request_cancel, terminate...)."""

    def __init__(self, index: int, mp: Any, lifeline: Connection,
                 settings: SlotSettings) -> None:
        self.index = index
        self._mp = mp
        self._lifeline = lifeline
        self._settings = settings
        self.pid: int | None = None
        self.claim: Claim | None = None
        self.started = 0.0                    # monotonic: when the current attempt began
        self.deadline: float | None = None
        self.cancel_at: float | None = None
        self.stop_reason: ErrorCode | None = None  # why we stop its process, if we do
        self.kill_at: float | None = None     # SIGKILL then, if SIGTERM was not enough
        self.retire = False                   # replace the process once it is idle
        self.jobs_done = 0
        self.rss: int | None = None           # process tree RSS, last sample
        self.peak_rss: int | None = None      # highest sample during this attempt
        self.expected = 0                     # memory the running job is expected to need
        self._process: Any = None             # the executor's Process: its exit code
        self.executor: ProcessPoolExecutor | None = None
        self.pid_future: Future[int] | None = None
        self.life: Future[None] | None = None
        self.conn: Connection | None = None
        self.cancel_flag: Any = None
        self.stop_flag: Any = None

    def start(self) -> None:
        """Start the process (a fresh pipe each time: a killed process may have left half a
        message in the old one). `life` completes when the process ends."""
        self.conn, child = self._mp.Pipe(duplex=True)
        self.cancel_flag = self._mp.RawValue(ctypes.c_int64, 0)
        self.stop_flag = self._mp.RawValue(ctypes.c_int64, 0)
        _start_forkserver()
        self.executor = ProcessPoolExecutor(
            max_workers=1, mp_context=self._mp, initializer=_init_slot,
            initargs=(child, self.cancel_flag, self.stop_flag, self._lifeline,
                      self._settings))
        self.pid = None
        self._process = None
        self.stop_reason = self.kill_at = None
        self.retire = False
        self.jobs_done = 0
        self.rss = None
        self.pid_future = self.executor.submit(os.getpid)
        self.pid_future.add_done_callback(self._learn_pid)
        self.life = self.executor.submit(serve_slot)
        child.close()  # the slot process holds its own copy

    def _learn_pid(self, future: Future[int]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.pid = future.result()
            # The executor keeps no exit code of its own; its Process object does (private,
            # stable since 3.8), and that is how a crash reports "signal 9" or "exit 1".
            executor = self.executor
            self._process = getattr(executor, "_processes", {}).get(self.pid)

    def exit_status(self) -> str:
        """How the process ended, for a crash report: "killed by SIGKILL", "exit code 1".
        Only for a process that has ended."""
        if self.executor is not None:
            # The executor's own thread is reading the exit status from the forkserver as
            # it winds down; reading it at the same time would race it for the one message
            # (and report 255). Once that thread is done, the status is cached.
            self.executor.shutdown(wait=True, cancel_futures=True)
        code = None if self._process is None else self._process.exitcode
        if code is None:
            return "exit status unknown"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    @property
    def busy(self) -> bool:
        """True while an attempt runs here."""
        return self.claim is not None

    def run(self, claim: Claim, expected: int) -> None:
        """Send `claim` to the process, its job expected to need `expected` bytes; raises
        OSError if the process is already gone."""
        assert self.conn is not None and self.claim is None
        send(self.conn, Attempt(claim.task, claim.params_json, claim.id, claim.attempt,
                                claim.token, claim.parents_json, claim.parent_artifacts))
        self.claim = claim
        self.expected = expected
        self.started = time.monotonic()
        self.deadline = self.started + claim.timeout if claim.timeout else None
        self.cancel_at = None
        self.peak_rss = None

    def complete(self, token: int, recycle_after: int) -> Claim | None:
        """The process reported the end of the attempt holding `token`: the slot is free, and
        this is the attempt's claim (None: that attempt was already taken back). After
        `recycle_after` jobs (0: no limit) the process is replaced once idle."""
        claim = self.claim
        if claim is None or claim.token != token:
            return None
        self.claim = None
        self.jobs_done += 1
        if recycle_after and self.jobs_done >= recycle_after:
            self.retire = True
        return claim

    def release(self) -> Claim | None:
        """Take back the running attempt's claim, if any, with no report from the process
        (it died, sent what the pool refuses, or the pool is stopping)."""
        claim, self.claim = self.claim, None
        return claim

    def sample(self, rss: int) -> None:
        """Record the process tree's RSS, and the attempt's peak while one runs."""
        self.rss = rss
        if self.claim is not None:
            self.peak_rss = max(self.peak_rss or 0, rss)

    def recycle(self) -> None:
        """Replace the process once it is idle (the dispatcher's housekeeping does)."""
        self.retire = True

    def request_cancel(self, token: int, grace: float) -> None:
        """Raise ctx.cancel_requested for the attempt holding `token`; kill after `grace`."""
        if self.claim is not None and self.claim.token == token and self.cancel_at is None:
            self.cancel_flag.value = token
            self.cancel_at = time.monotonic() + grace

    def terminate(self, reason: ErrorCode, grace: float) -> None:
        """Stop the process for `reason`: SIGTERM now, SIGKILL after `grace` seconds (the
        dispatcher's housekeeping sends it) or at once when `grace` is 0."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.retire = True
        if grace > 0:
            self.kill_at = time.monotonic() + grace
            self.stop_flag.value = 1  # before the signal: the slot honours this TERM
            self._signal(signal.SIGTERM)
        else:
            self.kill()

    def kill(self) -> None:
        """SIGKILL this slot's process; `life` then fails with BrokenProcessPool."""
        self.kill_at = None
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def replace(self) -> None:
        """Discard the process (dead or not) and start a fresh one."""
        self.stop(kill=True)
        self.start()

    def stop(self, kill: bool) -> None:
        """End the process: closing the pipe ends `serve_slot`; with `kill`, at once."""
        self.life = None  # its end is ours, not news
        if kill:
            self.kill()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.executor is not None:
            self.executor.shutdown(wait=not kill, cancel_futures=True)
            self.executor = None
        self.claim = None


class Slots:
    """All slots of the pool."""

    def __init__(self, count: int, settings: SlotSettings) -> None:
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(["scholarsource.tasks.builtin", *settings.task_modules])
        # The pool keeps the write end for its whole life; see _watch_lifeline.
        lifeline, self._lifeline_keep = mp.Pipe(duplex=False)
        self.all = [Slot(i, mp, lifeline, settings) for i in range(count)]

    def start(self) -> None:
        """Start every slot's process."""
        for slot in self.all:
            slot.start()

    async def started(self) -> None:
        """Wait until every slot's process is up; raises if one cannot start."""
        await asyncio.gather(*(asyncio.wrap_future(slot.pid_future) for slot in self.all
                               if slot.pid_future is not None))

    def free(self) -> list[Slot]:
        """Slots that can take an attempt now."""
        return [slot for slot in self.all if not slot.busy and not slot.retire]

    def busy(self) -> list[Slot]:
        """Slots running an attempt."""
        return [slot for slot in self.all if slot.busy]

    def pids(self) -> list[int]:
        """Known slot process ids."""
        return [slot.pid for slot in self.all if slot.pid is not None]

    def stop(self, kill: bool) -> None:
        """Stop every slot."""
        for slot in self.all:
            slot.stop(kill)
