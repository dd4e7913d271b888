"""`scholarsource serve`: one Gunicorn master, N Uvicorn API workers and the job pool.

The pool takes the place Gunicorn 27 keeps for its own sidecar, the "dirty arbiter": the
master already reaps that pid in both of its reaping paths, forwards HUP/USR1 to it, sends it
TERM on shutdown and waits for it within `graceful_timeout`, then KILLs. We override only how
it is spawned and what its exit means, so the pool shares the master's tested lifecycle.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import time
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer
from uvicorn_worker import UvicornWorker

from scholarsource import logs
from scholarsource.config import Config
from scholarsource.errors import ConfigError
from scholarsource.exitcodes import EXIT_DATA_DIR_IN_USE, EXIT_OK, EXIT_POOL_BOOT
from scholarsource.pool import sidecar
from scholarsource.sizing import plan
from scholarsource.store.schema import migrate

log = logging.getLogger("scholarsource.server")

# A pool that dies sooner than this after its start counts towards a crash loop, and each
# such death doubles the pause before the next respawn (up to the maximum).
_QUICK_DEATH = 5.0
_RESPAWN_PAUSE_MAX = 5.0
# API workers finish in-flight requests quickly; the pool needs its whole grace period.
_SHUTDOWN_MARGIN = 5.0
# Requests still open this long after SIGTERM (event streams, mostly) are cut.
API_SHUTDOWN_SECONDS = 3
# Importing task modules and starting the slots; a pool slower than this failed to boot.
_POOL_BOOT_TIMEOUT = 120.0


class ApiWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn_worker is untyped
    """Uvicorn's Gunicorn worker, with two additions for a server that must not linger.

    - Shutdown waits at most API_SHUTDOWN_SECONDS for open requests: an event stream of a
      long job would otherwise hold a SIGTERM for the whole graceful timeout (streams cut
      this way resume with Last-Event-ID).
    - The worker stops when its master dies. Gunicorn's own workers check for that; this
      one did not, and an orphan kept the port and the data directory's lock, so a restart
      failed. The check rides on uvicorn's notify tick, made once a second.
    """

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS,
                     "timeout_graceful_shutdown": API_SHUTDOWN_SECONDS,
                     "timeout_notify": 1}
    _orphaned = False

    async def callback_notify(self) -> None:
        self.notify()
        if os.getppid() != self.ppid and not self._orphaned:
            self._orphaned = True
            self.log.warning("the master (pid %s) is gone; stopping this worker", self.ppid)
            os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful shutdown


class PoolArbiter(Arbiter):  # type: ignore[misc]  # gunicorn is untyped
    """Gunicorn's arbiter, with the job pool in the dirty arbiter's place."""

    def __init__(self, app: Application) -> None:
        super().__init__(app)
        self.config = app.config
        self._pool_started = 0.0
        self._quick_deaths = 0
        self._respawn_at = 0.0
        self._stopping = False
        self.dirty_arbiter_pid: int = 0

    def start(self) -> None:
        super().start()
        # The first pool must be up before any API worker starts: a pool that cannot boot
        # (a task module that does not import) stops the server here, with its exit code,
        # instead of leaving an API that queues jobs nobody will run.
        ready_fd = self._spawn_pool()
        try:
            ready, _, _ = select.select([ready_fd], [], [], _POOL_BOOT_TIMEOUT)
            booted = bool(ready) and os.read(ready_fd, 1) == b"R"
        finally:
            os.close(ready_fd)
        if not booted:
            if not ready:  # still booting after the timeout: give up on it
                os.kill(self.dirty_arbiter_pid, signal.SIGKILL)
            _, status = os.waitpid(self.dirty_arbiter_pid, 0)
            self.dirty_arbiter_pid = 0
            failed = os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_POOL_BOOT
            self.halt("the pool failed to boot (see the log above)" if failed else
                      "the pool did not start", EXIT_POOL_BOOT)

    def spawn_worker(self) -> int:
        logs.set_role("api")  # the forked worker keeps it; the master takes its own back
        try:
            pid: int = super().spawn_worker()
            return pid
        finally:
            logs.set_role("master")

    def manage_dirty_arbiter(self) -> None:
        if self.dirty_arbiter_pid or self._stopping or time.monotonic() < self._respawn_at:
            return
        os.close(self._spawn_pool())

    def _spawn_pool(self) -> int:
        self._pool_started = time.monotonic()
        logs.set_role("pool")  # the forked pool keeps it; the master takes its own back
        try:
            self.dirty_arbiter_pid, ready_fd = sidecar.spawn(self.config, self.LISTENERS)
        finally:
            logs.set_role("master")
        log.info("pool process started (pid %s)", self.dirty_arbiter_pid)
        return ready_fd

    def handle_dirty_arbiter_exit(self, wpid: int, status: int) -> None:
        self.dirty_arbiter_pid = 0
        self.dirty_arbiter = None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if self._stopping:
            log.info("pool process %s %s", wpid, _describe(status))
            return
        if code == EXIT_POOL_BOOT:
            raise HaltServer("the pool failed to boot (see the log above)", EXIT_POOL_BOOT)
        if code == EXIT_OK:  # it drained on HUP: a reload, not a crash
            log.info("pool process %s drained for a reload", wpid)
            self._quick_deaths = 0
        else:
            log.error("pool process %s %s", wpid, _describe(status))
            lived = time.monotonic() - self._pool_started
            self._quick_deaths = self._quick_deaths + 1 if lived < _QUICK_DEATH else 0
        pause = min(0.1 * 2 ** (self._quick_deaths - 1), _RESPAWN_PAUSE_MAX) \
            if self._quick_deaths else 0.0
        self._respawn_at = time.monotonic() + pause
        log.warning("respawning the pool%s", f" in {pause:.1f}s" if pause else "")

    def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        super().stop(graceful)


def _describe(status: int) -> str:
    """How a child ended, for the log: signal and exit code are told apart."""
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        hint = " (perhaps out of memory?)" if sig == signal.SIGKILL else ""
        return f"was killed by {sig.name}{hint}"
    return f"exited with code {os.WEXITSTATUS(status)}"


class Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """Gunicorn configured from our Config; each worker loads the Starlette app."""

    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        host, port = self.config.host_port()
        sizing = plan(self.config)
        settings: dict[str, Any] = {
            "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
            "workers": sizing.workers,
            "worker_class": "scholarsource.server.ApiWorker",
            "graceful_timeout": int(self.config.grace_period + _SHUTDOWN_MARGIN),
            "timeout": 30,
            "keepalive": 5,
            "backlog": 2048,
            "loglevel": self.config.log_level,
            "errorlog": "-",
            "accesslog": None,
            "logger_class": "scholarsource.logs.GunicornLogger",
            "proc_name": "scholarsource",
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from scholarsource.api.app import create_app

        return create_app(self.config)

    def run(self) -> None:
        PoolArbiter(self).run()


def _lock_data_dir(config: Config) -> int:
    """Hold an exclusive lock on the data directory for the life of the server."""
    os.makedirs(config.data_dir, exist_ok=True)
    fd = os.open(os.path.join(config.data_dir, "scholarsource.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(EXIT_DATA_DIR_IN_USE) from None
    return fd


def serve(config: Config) -> None:
    """Run the server in the foreground until it is stopped."""
    logs.setup(config.log_level, config.log_format)
    logs.set_role("master")
    try:
        lock = _lock_data_dir(config)
    except SystemExit:
        log.error("data directory %s is in use by another server", config.data_dir)
        raise
    except OSError as exc:
        raise ConfigError(f"cannot use data directory {config.data_dir}: {exc}") from None
    migrate(config.db_path)
    log.info("data in %s (durability=%s)", os.path.abspath(config.data_dir), config.durability)
    log.info("sizing: %s", plan(config).describe())
    try:
        Application(config).run()
    finally:
        os.close(lock)
