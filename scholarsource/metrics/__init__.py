"""Prometheus metrics, summed across every process.

prometheus-client's multiprocess mode: each process writes its own values to mmap'd files in
one directory, and whichever API worker answers `GET /metrics` adds them up. The mode is
chosen when prometheus_client is first imported, so `serve` calls `use_directory()` (this
module imports no prometheus_client) before anything imports `metrics.counters`. Figures that
are read rather than counted (queue depth, slots, file sizes, CPU and RSS by role) are
collected at scrape time instead, by scholarsource/api/prometheus.py.

The files live in a RAM-backed runtime directory, never on the data disk. prometheus-client
grows them as sparse files and writes through the mapping: on a full disk the kernel cannot
back a page that a new worker or a new label touches, and the process dies of SIGBUS (seen
on a full data disk: every API worker in a respawn loop, every request reset).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from scholarsource.errors import ConfigError

ENV = "PROMETHEUS_MULTIPROC_DIR"
# Shared memory: tmpfs on Linux, where no systemd or login session gives a runtime directory.
SHARED_MEMORY = Path("/dev/shm")


def runtime_directory(data_dir: str, env: Mapping[str, str] = os.environ) -> Path:
    """This server's metrics directory: systemd's RuntimeDirectory= (the unit's own), else
    one per data directory under the user's XDG_RUNTIME_DIR, else under /dev/shm. The data
    directory's lock admits one server per data directory, so one directory per data
    directory is one per server."""
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / "metrics"
    key = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:16]
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / f"scholarsource-{key}"
    base = SHARED_MEMORY if SHARED_MEMORY.is_dir() else Path(tempfile.gettempdir())
    return base / f"scholarsource-{os.getuid()}-{key}"


def use_directory(data_dir: str) -> Path:
    """Start with an empty metrics directory (counters restart with the server, as
    Prometheus expects) and put every process in multiprocess mode; returns the directory."""
    path = runtime_directory(data_dir)
    shutil.rmtree(path, ignore_errors=True)
    try:
        # Not exist_ok: in a world-writable /dev/shm, a directory (or link) that survived
        # rmtree is someone else's, and must not receive our files.
        path.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the metrics directory {path}: {exc.strerror}; "
                          "remove it, or set XDG_RUNTIME_DIR to a directory of your own"
                          ) from None
    os.environ[ENV] = str(path)
    # Forked workers inherit atexit handlers: only the process that made it removes it.
    atexit.register(_remove, path, os.getpid())
    return path


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)
