"""`scholarsource serve`: one Gunicorn master, N Uvicorn API workers and the job pool.

The pool takes the place Gunicorn 27 keeps for its own sidecar, the "dirty arbiter": the
master already reaps that pid in both of its reaping paths, forwards HUP/USR1 to it, sends it
TERM on shutdown and waits for it within `graceful_timeout`, then KILLs. We override only how
it is spawned and what its exit means, so the pool shares the master's tested lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer
from uvicorn_worker import UvicornWorker

from scholarsource import logs, metrics
from scholarsource.api import authmode, hosts
from scholarsource.bindcheck import check_bindable
from scholarsource.config import Config
from scholarsource.datalock import lock_data_dir
from scholarsource.errors import ConfigError, DataDirInUse, ScholarSourceError
from scholarsource.exitcodes import EXIT_DATA_DIR_IN_USE, EXIT_OK, EXIT_POOL_BOOT
from scholarsource.filelimit import raise_file_limit
from scholarsource.keycommands import admin_hint
from scholarsource.sizing import plan
from scholarsource.store.factory import migrate_store
from scholarsource.systemd import Notifier

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


# The library internals this module overrides or calls; `check_overrides` verifies at start
# that the installed versions still have them.
_OVERRIDDEN = ((UvicornWorker, "_serve"), (uvicorn.Server, "capture_signals"),
               (Arbiter, "manage_dirty_arbiter"), (Arbiter, "handle_dirty_arbiter_exit"))


def check_overrides() -> None:
    """Raise ScholarSourceError if a library hook we replace is gone: silently running the
    library's own version instead would break the shutdown and the pool's supervision."""
    for owner, name in _OVERRIDDEN:
        if not callable(getattr(owner, name, None)):
            raise ScholarSourceError(f"{owner.__module__}.{owner.__qualname__}.{name} is "
                                     f"gone: this version of {owner.__module__.split('.')[0]} "
                                     f"is not supported")


class _ApiServer(uvicorn.Server):
    """Uvicorn's server, stopped by each signal Gunicorn sends its workers: TERM, and INT or
    QUIT for a quick stop. Uvicorn alone handles TERM and INT only, so the QUIT of a quick
    shutdown went unheard until the master killed the worker after its whole graceful
    timeout. A HUP reaches a worker only when sent to the whole process group (the master
    reloads by starting new workers and sending the old ones TERM): it stops the worker too,
    instead of killing it. Each drains alike: open requests get at most
    API_SHUTDOWN_SECONDS, and an idle worker stops at once. The signal is not raised again
    once the server has stopped (uvicorn does that for a plain `uvicorn` command): the worker
    exits 0, and the master has no "was sent SIGTERM" to report."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        stops = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
        for sig in stops:
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in stops:
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        self.should_exit = True


class ApiWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn_worker is untyped
    """Uvicorn's Gunicorn worker, with three additions for a server that must not linger.

    - Shutdown waits at most API_SHUTDOWN_SECONDS for open requests: an event stream of a
      long job would otherwise hold a SIGTERM for the whole graceful timeout (streams cut
      this way resume with Last-Event-ID).
    - The worker stops when its master dies. Gunicorn's own workers check for that; this
      one did not, and an orphan kept the port and the data directory's lock, so a restart
      failed. The check rides on uvicorn's notify tick, made once a second.
    - It stops on every signal Gunicorn sends it (see _ApiServer), and stops quietly.
    """

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS,
                     "timeout_graceful_shutdown": API_SHUTDOWN_SECONDS,
                     "timeout_notify": 1,
                     # httptools with limits on request heads (a string: imported in the
                     # worker, after serve() chose the metrics directory).
                     "http": "scholarsource.api.headlimits:HeadLimitedProtocol"}
    _orphaned = False

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = _ApiServer(config=self.config)
        # The plain sockets, not Gunicorn's wrappers: uvloop closes a listener's descriptor
        # itself, and the wrapper's own close then failed with EBADF ("Error while closing
        # socket") on every stop.
        await server.serve(sockets=[getattr(sock, "sock", sock) for sock in self.sockets])
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

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
        self._pool_started = 0.0
        self._pulse_fd: int | None = None
        self._last_pulse = 0.0
        self._quick_deaths = 0
        self._respawn_at = 0.0
        self._stopping = False
        self.dirty_arbiter_pid: int = 0
        self.notifier = Notifier.from_environment()
        self._ready_sent = False

    @property
    def config(self) -> Config:
        """The config in effect (a HUP may have reloaded it)."""
        config: Config = self.app.config
        return config

    def start(self) -> None:
        super().start()
        # The first pool must be up before any API worker starts: a pool that cannot boot
        # (a task module that does not import) stops the server here, with its exit code,
        # instead of leaving an API that queues jobs nobody will run.
        self._spawn_pool()
        assert self._pulse_fd is not None
        ready, _, _ = select.select([self._pulse_fd], [], [], _POOL_BOOT_TIMEOUT)
        booted = bool(ready) and self._read_pulses()
        if not booted:
            if not ready:  # still booting after the timeout: give up on it
                os.kill(self.dirty_arbiter_pid, signal.SIGKILL)
            _, status = os.waitpid(self.dirty_arbiter_pid, 0)
            self._close_pulses()
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

    def manage_workers(self) -> None:
        super().manage_workers()
        # Gunicorn calls this once per turn of its loop (at least once a second), the first
        # time right after start(): the pool is up, the listener bound, the workers forked.
        if not self._ready_sent and self.WORKERS and self.LISTENERS:
            self._ready_sent = True
            self.notifier.ready(f"{len(self.WORKERS)} API worker(s); pool pid "
                                f"{self.dirty_arbiter_pid}")
            log.info("ready: %s", _where_to_go(self.config))
        self.notifier.keepalive(healthy=self._pool_checks_in())

    def _pool_checks_in(self) -> bool:
        """The pool checks in within the limits the master enforces itself: its pulse is no
        older than pool_stall_timeout, or it is still within its boot time.

        Past those limits the master kills and respawns the pool, re-queueing its jobs and
        keeping the API up. systemd's watchdog, which restarts everything, is the last
        resort for a master that hangs or a pool that stays gone, so it must not fire first."""
        age = self.pool_pulse_age()
        if age is not None:
            return age <= self.config.pool_stall_timeout
        booting = time.monotonic() - self._pool_started
        return bool(self.dirty_arbiter_pid) and booting <= _POOL_BOOT_TIMEOUT

    def handle_hup(self) -> None:
        # `systemctl reload` waits for READY=1 again. Gunicorn has replaced the API workers
        # when handle_hup returns; the pool drains and is respawned meanwhile, and the API
        # queues jobs for it, so the reload is complete from a client's point of view.
        self.notifier.reloading()
        super().handle_hup()
        self.notifier.ready("reloaded; the pool restarts once its running jobs finish")

    def manage_dirty_arbiter(self) -> None:
        if self.dirty_arbiter_pid:
            self._watch_pool()
        elif not self._stopping and time.monotonic() >= self._respawn_at:
            self._spawn_pool()

    def _spawn_pool(self) -> None:
        self._close_pulses()
        self._last_pulse = 0.0
        # Imported here, after serve() chose the metrics directory (see scholarsource.metrics).
        from scholarsource.metrics.counters import POOL_RESTARTS
        from scholarsource.pool import sidecar

        if self._pool_started:
            POOL_RESTARTS.inc()
        self._pool_started = time.monotonic()
        logs.set_role("pool")  # the forked pool keeps it; the master takes its own back
        try:
            self.dirty_arbiter_pid, self._pulse_fd = sidecar.spawn(self.config, self.LISTENERS)
        finally:
            logs.set_role("master")
        os.set_blocking(self._pulse_fd, False)
        log.info("pool process started (pid %s)", self.dirty_arbiter_pid)

    def _read_pulses(self) -> bool:
        """Take what the pool said since the last look; True if it said anything."""
        if self._pulse_fd is None:
            return False
        try:
            data = os.read(self._pulse_fd, 4096)
        except BlockingIOError:
            return False
        if not data:  # EOF: the pool is gone, and its exit is reaped separately
            self._close_pulses()
            return False
        self._last_pulse = time.monotonic()
        return True

    def _close_pulses(self) -> None:
        if self._pulse_fd is not None:
            os.close(self._pulse_fd)
            self._pulse_fd = None

    def _watch_pool(self) -> None:
        """Kill a pool that is alive but hung: its dispatcher stopped checking in. The kill
        is reaped like any death, and a fresh pool re-queues the jobs it held."""
        self._read_pulses()
        now = time.monotonic()
        if self._last_pulse:
            silent, limit = now - self._last_pulse, self.config.pool_stall_timeout
        else:
            silent, limit = now - self._pool_started, _POOL_BOOT_TIMEOUT
        if silent > limit:
            log.error("the pool (pid %s) has not checked in for %.0fs; killing it",
                      self.dirty_arbiter_pid, silent)
            try:
                os.kill(self.dirty_arbiter_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._last_pulse = now  # one kill per stall; the reap respawns it

    def pool_pulse_age(self) -> float | None:
        """Seconds since the pool last checked in; None while no pool is up and ready."""
        if not self.dirty_arbiter_pid or not self._last_pulse:
            return None
        return time.monotonic() - self._last_pulse

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
        # One quick death is respawned at once (its jobs wait on it); a second in a row
        # starts the backoff. The master's loop wakes about once a second, so any pause
        # here costs at least that.
        pause = min(0.1 * 2 ** (self._quick_deaths - 2), _RESPAWN_PAUSE_MAX) \
            if self._quick_deaths > 1 else 0.0
        self._respawn_at = time.monotonic() + pause
        log.warning("respawning the pool%s", f" in {pause:.1f}s" if pause else "")

    def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        self.notifier.stopping()
        super().stop(graceful)


def _describe(status: int) -> str:
    """How a child ended, for the log: signal and exit code are told apart."""
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        hint = " (perhaps out of memory?)" if sig == signal.SIGKILL else ""
        return f"was killed by {sig.name}{hint}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _where_to_go(config: Config) -> str:
    """The URLs a new user wants once the server is up (loopback for a wildcard bind)."""
    host, port = config.host_port()
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return (f"dashboard {base}/dashboard, API {base}/api/jobs (described at "
            f"{base}/api/openapi.json), metrics {base}/metrics")


class Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """Gunicorn configured from our Config; each worker loads the Starlette app.

    On HUP Gunicorn calls load_config again: `reload_config` rebuilds the Config from its
    sources, and the new API workers and the respawned pool start with it. A config that
    no longer validates is refused and the running one kept; the data directory cannot
    change under a running server.
    """

    def __init__(self, config: Config,
                 reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        self._reload_config = reload_config
        self._loaded = False
        super().__init__()

    def load_config(self) -> None:
        if self._loaded and self._reload_config is not None:
            self.config = self._reloaded(self.config)
        self._loaded = True
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

    def _reloaded(self, current: Config) -> Config:
        assert self._reload_config is not None
        try:
            new = self._reload_config()
            authmode.check_bind(new)  # a reload may not open a public bind to anyone either
        except ScholarSourceError as exc:
            log.error("reload: the config is invalid, keeping the running one: %s", exc)
            return current
        if new.data_dir != current.data_dir:
            log.error("reload: data_dir cannot change while the server runs; keeping %s",
                      current.data_dir)
            new = dataclasses.replace(new, data_dir=current.data_dir)
        log.info("reload: config re-read")
        return new

    def load(self) -> Any:
        from scholarsource.api.app import create_app

        return create_app(self.config)

    def run(self) -> None:
        PoolArbiter(self).run()


# Fewer open files than this per process and a few hundred event streams use them up.
_FEW_FILES = 4096


def _open_files() -> None:
    """Raise the open-file limit for every process to come: each connection, and so each
    open event stream, holds a socket."""
    before, now = raise_file_limit()
    if now != before:
        log.info("open files: limit raised from %d to %d", before, now)
    if now < _FEW_FILES:
        log.warning("open files: the limit is %d; each connection and event stream holds "
                    "one (raise it: ulimit -n, or LimitNOFILE= under systemd)", now)


def serve(config: Config, reload_config: Callable[[], Config] | None = None) -> None:
    """Run the server in the foreground until it is stopped; `reload_config` re-reads the
    config on SIGHUP."""
    # Before anything is created: a taken port or an unguarded public bind is a config error.
    check_bindable(config)
    hosts.check_bind(config)
    authmode.check_bind(config)
    logs.setup(config.log_level, config.log_format)
    logs.set_role("master")
    check_overrides()
    try:
        lock = lock_data_dir(config.data_dir)
    except DataDirInUse:
        log.error("data directory %s is in use by another server", config.data_dir)
        raise SystemExit(EXIT_DATA_DIR_IN_USE) from None
    except OSError as exc:
        raise ConfigError(f"cannot use data directory {config.data_dir}: {exc}") from None
    migrate_store(config)
    if authmode.mode(config) == "keys" and (hint := admin_hint(config)) is not None:
        log.warning("%s", hint)
    if config.database.is_postgres:
        log.info("jobs in %s", config.database)  # its password masked by its type
    metrics.use_directory(config.data_dir)
    _open_files()
    log.info("data in %s (durability=%s)", os.path.abspath(config.data_dir), config.durability)
    log.info("sizing: %s", plan(config).describe())
    try:
        Application(config, reload_config).run()
    finally:
        os.close(lock)
