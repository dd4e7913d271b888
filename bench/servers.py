"""Start and stop the servers under test as real subprocesses.

Each server runs in its own session on a free 127.0.0.1 port and logs to a file (never an
undrained pipe). `stop()` sends TERM to the master, waits, then KILLs the whole process
group, so no slot or worker outlives a bench run, whatever happened in between.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

BENCH_DIR = Path(__file__).resolve().parent
# "2026-01-02 03:04:05 +0000 [123] " (ours) or "[2026-01-02 03:04:05 +0000] [123] " (gunicorn)
_LOG_PREFIX = re.compile(r"^\[?[\d-]+ [\d:]+ [+-]\d{4}\]? \[\d+\] ")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One running server: its master process, URL and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    ready_path: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until `ready_path` answers 200, or raise with the server's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

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

    def stop(self, timeout: float = 30.0) -> int | None:
        """TERM the master, wait, then KILL the group; returns the master's exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

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
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    server = Server(name, proc, url, log_path, ready_path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}


def start_scholarsource(workdir: Path, *, workers: int = 2, slots: int = 2,
                        name: str = "scholarsource") -> Server:
    """`python -m scholarsource serve` on a fresh data dir under `workdir`."""
    port = free_port()
    data_dir = workdir / f"{name}-data"
    argv = [sys.executable, "-m", "scholarsource", "serve", "--bind", f"127.0.0.1:{port}",
            "--data-dir", str(data_dir), "--workers", str(workers), "--slots", str(slots)]
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
