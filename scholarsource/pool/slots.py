"""Slots: one single-process executor each, so killing one job's process touches no other.

A stdlib ProcessPoolExecutor breaks as a whole when one of its processes dies
(BrokenProcessPool). With one process per executor, a kill (cancel, timeout, crash) breaks
only that slot's executor, which is then replaced.

Start method: `forkserver`. Plain `fork` would copy the pool process mid-flight (its aiosqlite
thread, its event loop, its open database connection) into every slot, which is unsafe with
threads. `spawn` is safe but pays a fresh interpreter plus every task import per slot. The
forkserver is a clean single-threaded process that imports the task modules once
(`set_forkserver_preload`), so a replacement slot forks from it in milliseconds. It is also
what `max_tasks_per_child` requires.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from scholarsource.store.base import Claim
from scholarsource.tasks.context import CancelFlag, Context
from scholarsource.tasks.registry import get_task, load_tasks

log = logging.getLogger("scholarsource.pool")

# Set in each slot process by `_init_slot`.
_channel: Connection | None = None
_cancel_flag: CancelFlag | None = None
_max_result_bytes = 0


def _init_slot(channel: Connection, cancel_flag: CancelFlag, lifeline: Connection,
               task_modules: tuple[str, ...], max_result_bytes: int) -> None:
    """Runs once in each slot process, before its first job."""
    global _channel, _cancel_flag, _max_result_bytes
    _channel, _cancel_flag, _max_result_bytes = channel, cancel_flag, max_result_bytes
    # Ctrl-C in a terminal reaches the whole process group; the pool decides when slots stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True,
                     name="lifeline").start()
    load_tasks(task_modules)


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


def run_attempt(task: str, params: dict[str, Any], job_id: str, attempt: int,
                token: int) -> tuple[str, str | None, str | None]:
    """Run one attempt inside a slot: ("ok", result as JSON, None) or ("error", message,
    traceback). Encoding here finds a result the store cannot hold while it is still the
    task's error, and spares the pool's loop the work."""
    ctx = Context(job_id, attempt, token, _channel, _cancel_flag)
    try:
        result = get_task(task).fn(ctx, **params)
        encoded = None if result is None else json.dumps(result)
        if encoded is not None and len(encoded) > _max_result_bytes:
            return ("error", f"result_too_large: {len(encoded)} bytes of JSON, more than "
                             f"max_result_bytes ({_max_result_bytes})", None)
        return "ok", encoded, None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return "error", message, traceback.format_exc()


class Slot:
    """One job process, its progress channel and its cancel flag."""

    def __init__(self, index: int, mp: Any, lifeline: Connection,
                 task_modules: tuple[str, ...], max_result_bytes: int) -> None:
        self.index = index
        self._mp = mp
        self._lifeline = lifeline
        self._task_modules = task_modules
        self._max_result_bytes = max_result_bytes
        self.pid: int | None = None
        self.claim: Claim | None = None
        self.deadline: float | None = None
        self.cancel_at: float | None = None
        self.executor: ProcessPoolExecutor | None = None
        self.pid_future: Future[int] | None = None
        self.channel: Connection | None = None
        self.cancel_flag: Any = None

    def start(self) -> None:
        """Create the executor and its process (a fresh channel each time: a killed process
        may have left half a message in the old one)."""
        receive, send = self._mp.Pipe(duplex=False)
        self.channel = receive
        self.cancel_flag = self._mp.RawValue(ctypes.c_int64, 0)
        self.executor = ProcessPoolExecutor(
            max_workers=1, mp_context=self._mp, initializer=_init_slot,
            initargs=(send, self.cancel_flag, self._lifeline, self._task_modules,
                      self._max_result_bytes))
        self.pid = None
        self.pid_future = self.executor.submit(os.getpid)
        self.pid_future.add_done_callback(self._learn_pid)
        send.close()  # the slot process holds its own copy

    def _learn_pid(self, future: Future[int]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.pid = future.result()

    @property
    def busy(self) -> bool:
        """True while an attempt runs here."""
        return self.claim is not None

    def run(self, claim: Claim) -> Future[tuple[str, str | None, str | None]]:
        """Start `claim` here; raises BrokenProcessPool if the process already died."""
        assert self.executor is not None and self.claim is None
        future = self.executor.submit(run_attempt, claim.task, claim.params, claim.id,
                                      claim.attempt, claim.token)
        self.claim = claim
        self.deadline = time.monotonic() + claim.timeout if claim.timeout else None
        self.cancel_at = None
        return future

    def request_cancel(self, token: int, grace: float) -> None:
        """Raise ctx.cancel_requested for the attempt holding `token`; kill after `grace`."""
        if self.claim is not None and self.claim.token == token and self.cancel_at is None:
            self.cancel_flag.value = token
            self.cancel_at = time.monotonic() + grace

    def alive(self) -> bool:
        """False once the slot's process is gone (a slot still starting counts as alive)."""
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL this slot's process; its future then fails with BrokenProcessPool."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def replace(self) -> None:
        """Discard a broken executor and start a fresh process."""
        self.stop(kill=True)
        self.start()

    def stop(self, kill: bool) -> None:
        """Shut the executor down; with `kill`, do not wait for a running job."""
        if kill:
            self.kill()
        if self.executor is not None:
            self.executor.shutdown(wait=not kill, cancel_futures=True)
            self.executor = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.claim = None


class Slots:
    """All slots of the pool."""

    def __init__(self, count: int, task_modules: tuple[str, ...],
                 max_result_bytes: int) -> None:
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(["scholarsource.tasks.builtin", *task_modules])
        # The pool keeps the write end for its whole life; see _watch_lifeline.
        lifeline, self._lifeline_keep = mp.Pipe(duplex=False)
        self.all = [Slot(i, mp, lifeline, task_modules, max_result_bytes)
                    for i in range(count)]

    def start(self) -> None:
        """Start every slot's process."""
        for slot in self.all:
            slot.start()

    async def started(self) -> None:
        """Wait until every slot's process is up; raises if one cannot start."""
        await asyncio.gather(*(asyncio.wrap_future(slot.pid_future) for slot in self.all
                               if slot.pid_future is not None))

    def free(self) -> list[Slot]:
        """Slots with no attempt running."""
        return [slot for slot in self.all if not slot.busy]

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

