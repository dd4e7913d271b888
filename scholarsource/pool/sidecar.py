"""The pool process: forked by the Gunicorn master, runs the dispatcher and owns the slots.

The master forks it the way Gunicorn forks its dirty arbiter (see server.py), reaps it, and
forks a new one if it dies. Inside, signals only reach the event loop (asyncio runs their
callbacks on the loop, never in signal context), and the process opens its own database
connection after the fork.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Iterable

from scholarsource.config import Config
from scholarsource.errors import TaskError
from scholarsource.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_POOL_BOOT
from scholarsource.limits import check_reservations
from scholarsource.pool.artifacts import Files
from scholarsource.pool.dispatcher import Dispatcher
from scholarsource.pool.handback import Handback
from scholarsource.pool.memory import Expectations
from scholarsource.pool.scheduler import check_schedules
from scholarsource.pool.slots import Slots, SlotSettings
from scholarsource.pool.suspect import Suspect
from scholarsource.sizing import plan
from scholarsource.store.factory import open_store
from scholarsource.store.owner import box_of, new_owner
from scholarsource.tasks.fetch import ENV_ALLOW_PRIVATE
from scholarsource.tasks.registry import load_tasks, task_rates

log = logging.getLogger("scholarsource.pool")

# What the pool tells the master over its pulse pipe.
READY = b"R"
ALIVE = b"."

_SLOT_START_TIMEOUT = 60.0
# The signals the Gunicorn master handles; the pool starts with their default actions.
_INHERITED_HANDLERS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM,
                       signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
                       signal.SIGWINCH, signal.SIGCHLD)


def spawn(config: Config, close_fds: Iterable[socket.socket]) -> tuple[int, int]:
    """Fork the pool process. Returns (pid, pulse_fd) in the parent: `pulse_fd` yields
    READY once the pool's slots are up, then ALIVE about once a second while its dispatcher
    turns, and EOF when the pool is gone. Never returns in the child."""
    master_pid = os.getpid()
    ready_r, ready_w = os.pipe()
    # Blocked across the fork: until the child has put back the default actions, a signal
    # would reach the master's inherited handler, which only queues it in the child's copy
    # of the master's queue, where nobody reads it (a TERM during a reload's respawn was
    # lost that way, and the stop waited out the whole graceful timeout). Blocked, it stays
    # pending until the child unblocks it, then acts.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _INHERITED_HANDLERS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ready_w)
        return pid, ready_r
    os.close(ready_r)
    code = EXIT_FAILURE  # an unexpected crash: the master respawns the pool
    try:
        for sock in close_fds:  # the pool must not keep the API's listening socket open
            sock.close()
        for sig in _INHERITED_HANDLERS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = run(config, master_pid, ready_w)
    except BaseException:
        log.exception("the pool process failed")
    finally:
        logging.shutdown()
        os._exit(code)


def run(config: Config, master_pid: int | None = None, ready_fd: int | None = None) -> int:
    """The pool process's main: returns its exit code."""
    try:
        return asyncio.run(_main(config, master_pid, ready_fd))
    except TaskError as exc:
        log.error("cannot load tasks: %s", exc)
        return EXIT_POOL_BOOT


def _pulse(fd: int | None, byte: bytes) -> None:
    """One byte to the master, never blocking: a master that does not read (or is gone)
    must not stall the pool."""
    if fd is None:
        return
    try:
        os.write(fd, byte)
    except (BlockingIOError, BrokenPipeError):
        pass


async def _main(config: Config, master_pid: int | None, ready_fd: int | None) -> int:
    registry = load_tasks(config.task_modules, config.builtin_tasks, config.max_timeout)
    sizing = plan(config)
    check_reservations(config.queues, sizing.slots)
    owner = new_owner(config.data_dir)
    store = await open_store(config, "pool")
    # Slots read this setting from the environment they inherit (they load no config).
    os.environ[ENV_ALLOW_PRIVATE] = "true" if config.fetch_allow_private else "false"
    slots = Slots(sizing.slots, SlotSettings.of(config))
    wakeups = await store.listen()
    suspect = Suspect.in_dir(config.data_dir)
    handback = Handback.in_dir(config.data_dir)
    try:
        # One pool per data directory (the master holds its lock), so whatever this box's
        # earlier pools still hold "running" belonged to a pool that died: it runs again
        # now. Other boxes' jobs wait for their leases (the dispatcher's sweep).
        # What a stopping pool could not write back goes back uncharged, as its stop would
        # have put it (pool/handback.py); the file goes once that is done.
        culprit = suspect.take()
        if requeued := await handback.requeue(store, culprit):
            log.warning("re-queued %d job(s) uncharged that the previous pool was handing back "
                        "as it stopped", requeued)
        recovered = await store.recover(owner, box=box_of(config.data_dir),
                                        max_crashes=config.max_crashes, culprit=culprit)
        if recovered:
            log.warning("re-queued %d job(s) interrupted by a previous pool's death", recovered)
        if culprit:
            log.warning("the previous pool died while handling job %s: that job alone is "
                        "charged a crash", culprit[0])
        # What attempts left behind when their pool died (or failed, unnoticed) goes now:
        # every directory that no job's artifacts or running attempt keeps.
        await Files.of(config).sweep(store)
        rates = task_rates(registry, config.tasks)
        defaults = [spec.defaults(rates.get(spec.name)) for spec in registry.values()]
        check_schedules(config, {d.name: d for d in defaults})  # or refuse to boot
        await store.publish_tasks(defaults)
        expect = Expectations(config.memory_per_job)
        for spec in registry.values():
            expect.declare(spec.name, spec.memory)
        slots.start()
        try:
            await asyncio.wait_for(slots.started(), _SLOT_START_TIMEOUT)
        except Exception as exc:
            raise TaskError(f"slot processes cannot start: {exc!r}") from exc
        log.info("pool ready (pid %d): %d slot(s), tasks: %s", os.getpid(), sizing.slots,
                 ", ".join(sorted(registry)))
        if ready_fd is not None:
            os.set_blocking(ready_fd, False)
        _pulse(ready_fd, READY)
        dispatcher = Dispatcher(config, store, slots, owner, master_pid, expect,
                                alive=lambda: _pulse(ready_fd, ALIVE), suspect=suspect,
                                rate_limited=bool(rates),
                                tasks={d.name: d for d in defaults}, handback=handback)
        loop = asyncio.get_running_loop()
        loop.add_reader(wakeups.fileno(), lambda: dispatcher.hint(wakeups.drain()))
        # The master forwards HUP (reload) and USR1 (reopen logs) to its sidecar. On HUP the
        # pool drains like on TERM and exits; the master forks a fresh one, whose new
        # forkserver imports the task code anew. USR1 needs nothing: we log to stderr.
        for stop, grace in ((signal.SIGTERM, config.grace_period), (signal.SIGINT, 0.0),
                            (signal.SIGQUIT, 0.0), (signal.SIGHUP, config.grace_period)):
            loop.add_signal_handler(stop, dispatcher.stop, grace)
            # The loop runs that stop once it turns, which a statement waiting for SQLite's
            # lock (the pool's driver waits inline) can hold off until the master's kill:
            # the signal's own Python-level handler lists what the pool hands back at once.
            # asyncio's wake-up still comes: it is written below Python, for any handler.
            signal.signal(stop, lambda *_: dispatcher.signalled())
            signal.siginterrupt(stop, False)  # as asyncio had it: system calls restart
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        await dispatcher.run()
        slots.stop(kill=False)  # idle by now: let each executor shut down cleanly
    finally:
        slots.stop(kill=True)
        suspect.close()
        wakeups.close()
        await store.close()
    log.info("pool stopped")
    return EXIT_OK
