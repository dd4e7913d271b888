"""The facts a bench result needs to mean something: the machine, its disk, the versions.

The disk's flush rate is measured, not looked up: with `durability = "full"` every commit
waits for one fsync, so that rate bounds committed writes per second.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = ("scholarsource", "starlette", "uvicorn", "uvicorn-worker", "gunicorn", "aiosqlite",
            "httpx", "httpcore", "anyio", "sniffio", "psutil")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _source_changed() -> bool | None:
    """Whether the package differs from the commit (uncommitted changes were measured)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent.parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def _source_digest() -> str:
    """sha256 over scholarsource/**/*.py as they are now: which code was measured, even
    with uncommitted changes."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Cores, RAM, OS, Python, SQLite, package versions, date and commit."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "ram_bytes": psutil.virtual_memory().total, "platform": platform.platform(),
        "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
        "packages": {name: _version(name) for name in PACKAGES}, "git_commit": _git_commit(),
        "source_changed": _source_changed(),
        # Others' load on a shared box skews absolute numbers: say how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "source_digest": _source_digest(),
    }


def _filesystem(path: Path) -> str | None:
    """The type of the filesystem that holds `path` (ext4, xfs, tmpfs, overlay...)."""
    best: tuple[int, str] | None = None
    resolved = str(path.resolve())
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and (
                best is None or len(mount) > best[0]):
            best = (len(mount), part.fstype)
    return best[1] if best else None


def fsync_rate(directory: Path, seconds: float = 1.0) -> dict[str, Any]:
    """How many 4 KiB write + fsync pairs per second the disk under `directory` takes: what
    one commit with `synchronous=FULL` waits for."""
    with tempfile.NamedTemporaryFile(dir=directory, prefix="fsync-") as handle:
        block, count = b"\0" * 4096, 0
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            os.pwrite(handle.fileno(), block, (count % 256) * 4096)
            os.fsync(handle.fileno())
            count += 1
    return {"fsyncs_per_s": round(count / elapsed, 1),
            "fsync_ms": round(elapsed / count * 1000, 3),
            "filesystem": _filesystem(directory), "directory": str(directory)}
