"""Start and stop the servers under test as real subprocesses.

Each server is started by `scholarsource.launcher`: its own session, a free 127.0.0.1 port,
a log file, and a stop that ends with KILL of the whole process group, so no slot or worker
outlives a bench run, whatever happened in between.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from scholarsource.launcher import ServerProcess, free_port, launch, serve_argv

BENCH_DIR = Path(__file__).resolve().parent
# "2026-01-02 03:04:05 +0000 [123] " (ours) or "[2026-01-02 03:04:05 +0000] [123] " (gunicorn)
_LOG_PREFIX = re.compile(r"^\[?[\d-]+ [\d:]+ [+-]\d{4}\]? \[\d+\] ")


@dataclass
class Server(ServerProcess):
    """A server under test, with what the bench reads off it."""

    name: str = "scholarsource"

    def pool_pid(self) -> int | None:
        """The job pool's pid, as /api/health reports it (None for the baseline)."""
        if self.ready_path != "/api/health":
            return None
        return httpx.get(self.url + self.ready_path, timeout=5).json()["processes"]["pool"]

    def cpu_by_role(self, pool_pid: int | None = None) -> dict[str, float]:
        """User + system CPU seconds so far of the master, the API workers (its other
        children) and the pool with its slots (the subtree of `pool_pid`)."""
        roles = {"master": 0.0, "api": 0.0, "pool": 0.0}
        try:
            root = psutil.Process(self.proc.pid)
            roles["master"] = _cpu(root)
            children = root.children()
        except psutil.Error:
            return roles
        for child in children:
            role = "pool" if child.pid == pool_pid else "api"
            try:
                tree = [child, *child.children(recursive=True)]
            except psutil.Error:
                continue
            roles[role] += sum(_cpu(proc) for proc in tree)
        return roles

    def problems(self) -> list[str]:
        """Log lines at WARNING and above, and tracebacks: each distinct message once, with
        how often it came (timestamps and pids stripped)."""
        marks = ("Traceback", "[ERROR]", "[CRITICAL]", "[WARNING]")
        seen = Counter(_LOG_PREFIX.sub("", line) for line in self.log().splitlines()
                       if any(m in line for m in marks))
        return [f"{n} x {message}" for message, n in seen.items()]


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _launch(name: str, argv: list[str], workdir: Path, env: dict[str, str],
            ready_path: str, url: str) -> Server:
    process = launch(argv, url=url, log_path=workdir / f"{name}.log", env=env,
                     ready_path=ready_path)
    return Server(process.proc, process.url, process.log_path, ready_path, name)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}


def start_scholarsource(workdir: Path, *, workers: int = 2, slots: int = 2,
                        name: str = "scholarsource") -> Server:
    """`python -m scholarsource serve` on a fresh data dir under `workdir`."""
    port = free_port()
    argv = serve_argv(port, workdir / f"{name}-data", workers=workers, slots=slots)
    return _launch(name, argv, workdir, _clean_env(), "/api/health",
                   f"http://127.0.0.1:{port}")


def start_baseline(workdir: Path, *, workers: int = 2, name: str = "baseline") -> Server:
    """The minimal Starlette + aiosqlite app (baseline_app.py) under the same Gunicorn setup."""
    port = free_port()
    env = _clean_env()
    env["BASELINE_DB"] = str(workdir / f"{name}.db")
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", "uvicorn_worker.UvicornWorker",
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--keep-alive", "5",
            "--backlog", "2048", "--pythonpath", str(BENCH_DIR), "baseline_app:app"]
    return _launch(name, argv, workdir, env, "/health", f"http://127.0.0.1:{port}")


def db_path(workdir: Path, name: str = "scholarsource") -> Path:
    """Where `start_scholarsource(workdir, name=name)` keeps its database."""
    return workdir / f"{name}-data" / "scholarsource.db"
