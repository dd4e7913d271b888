"""The servers a bench loads: one it starts itself, or one already running at `--url`.

A started server goes through `scholarsource.launcher`: its own session, a free 127.0.0.1
port, a log file, and a stop that ends with KILL of the whole process group, so no worker,
pool or slot outlives a bench run, whatever happened in between.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from scholarsource.bench.procstats import Roles, roles_from_health, roles_of_tree
from scholarsource.launcher import ServerProcess, free_port, launch, serve_argv

# "2026-01-02 03:04:05 +0000 [123] " (ours) or "[2026-01-02 03:04:05 +0000] [123] " (gunicorn)
_LOG_PREFIX = re.compile(r"^\[?[\d-]+ [\d:]+ [+-]\d{4}\]? \[\d+\] ")
BASELINE_APP = "scholarsource.bench.baseline_app:app"


class TargetError(Exception):
    """Raised when the server to load cannot be reached or started."""


@dataclass
class Target:
    """A server under load: its URL, and the process when the bench started it."""

    url: str
    name: str = "scholarsource"
    process: ServerProcess | None = None
    # Where a server the bench started keeps its store, and the config it was given: what a
    # scenario that writes to the store itself opens (e2e-fair: jobs of other tenants).
    data_dir: Path | None = None
    config: Path | None = None

    @property
    def baseline(self) -> bool:
        """Whether this is the baseline app rather than ScholarSource."""
        return self.name == "baseline"

    def roles(self) -> tuple[Roles | None, str | None]:
        """Pids by role for `procstats`, or (None, why they are unavailable)."""
        if self.baseline and self.process is not None:
            return roles_of_tree(self.process.proc.pid), None
        return roles_from_health(self.url)

    def health(self) -> dict[str, object]:
        """The server's /api/health answer (any status)."""
        body: dict[str, object] = httpx.get(self.url + "/api/health", timeout=10).json()
        return body

    def stop(self) -> int | None:
        """Stop the server if the bench started it; its exit code."""
        return self.process.stop() if self.process is not None else None

    def problems(self) -> list[str]:
        """Log lines at WARNING and above, and tracebacks, of a started server: each distinct
        message once, with how often it came (timestamps and pids stripped)."""
        if self.process is None:
            return []
        marks = ("Traceback", "[ERROR]", "[CRITICAL]", "[WARNING]")
        seen = Counter(_LOG_PREFIX.sub("", line) for line in self.process.log().splitlines()
                       if any(m in line for m in marks))
        return [f"{n} x {message}" for message, n in seen.items()]


def check_url(url: str) -> Target:
    """A running ScholarSource at `url`; TargetError if it does not answer its health check."""
    url = url.rstrip("/")
    try:
        response = httpx.get(url + "/api/health", timeout=10)
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach {url}: {exc}") from None
    if response.status_code not in (200, 503):
        raise TargetError(f"{url}/api/health answered {response.status_code}: "
                          "is this a ScholarSource server?")
    if response.status_code == 503:
        raise TargetError(f"{url} is not healthy: {response.text[:200]}")
    return Target(url)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}


def _launch(name: str, argv: list[str], workdir: Path, env: dict[str, str],
            ready_path: str, port: int) -> Target:
    url = f"http://127.0.0.1:{port}"
    try:
        process = launch(argv, url=url, log_path=workdir / f"{name}.log", env=env,
                         ready_path=ready_path)
    except RuntimeError as exc:
        tail = "\n".join(str(exc).splitlines()[-15:])
        raise TargetError(f"the {name} server did not start: {tail}") from None
    return Target(url, name, process)


def start_scholarsource(workdir: Path, *, workers: int, slots: int,
                        name: str = "scholarsource", config: Path | None = None) -> Target:
    """`python -m scholarsource serve` on a fresh data dir under `workdir` (0: sized by
    the server itself), with the settings of `config` if given (the bind address and data
    directory are always the bench's own)."""
    port = free_port()
    extra: tuple[str, ...] = ()
    if config is not None:  # sizes the command line leaves at 0 come from the config
        extra = ("--config", str(config))
    data_dir = workdir / f"{name}-data"
    argv = serve_argv(port, data_dir, workers=workers or None, slots=slots or None,
                      extra=extra)
    # The bench's workloads include the cpu task, which a default server does not expose.
    env = {**_clean_env(), "SCHOLARSOURCE_BUILTIN_TASKS": "all"}
    target = _launch(name, argv, workdir, env, "/api/health", port)
    target.data_dir, target.config = data_dir, config
    return target


def start_baseline(workdir: Path, *, workers: int) -> Target:
    """The minimal Starlette + aiosqlite app (baseline_app.py) under the same Gunicorn setup
    as `scholarsource serve`."""
    port = free_port()
    env = _clean_env()
    env["BASELINE_DB"] = str(workdir / "baseline.db")
    argv = [sys.executable, "-m", "gunicorn", "--worker-class", "uvicorn_worker.UvicornWorker",
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--keep-alive", "5",
            "--backlog", "2048", BASELINE_APP]
    return _launch("baseline", argv, workdir, env, "/health", port)
