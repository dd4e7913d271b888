"""What a bench result is worth without its context: machine facts and a readable table."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import sqlite3
import subprocess
import sys
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


def _source_digest() -> str:
    """sha256 over scholarsource/**/*.py as they are now: which code was measured, even
    with uncommitted changes."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent / "scholarsource"
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
        "cores": os.cpu_count(), "cpu": _cpu_model(),
        "ram_bytes": psutil.virtual_memory().total, "platform": platform.platform(),
        "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
        "packages": {name: _version(name) for name in PACKAGES}, "git_commit": _git_commit(),
        "source_digest": _source_digest(),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[tuple[str, Any, str]]) -> str:
    """Align (label, value, note) rows; a row whose value is None is a section heading."""
    width = max(len(label) for label, value, _ in rows if value is not None) + 2
    lines = []
    for label, value, note in rows:
        if value is None:
            lines.append(f"\n{label}")
            continue
        lines.append(f"  {label:<{width}}{_fmt(value):>14}  {note}".rstrip())
    return "\n".join(lines)
