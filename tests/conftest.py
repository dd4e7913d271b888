"""Fixtures are factories that clean up what they made.

`serve()` starts a real `python -m scholarsource serve` (real Gunicorn, real pool processes,
a real SQLite file) on a free port and a temporary data directory, in its own process
session, logging to a file; teardown sends TERM, waits, then KILLs the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_until

TESTS_DIR = Path(__file__).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a server under test: ours, minus any SCHOLARSOURCE_* settings,
    with the sample tasks importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env["SCHOLARSOURCE_TASK_MODULES"] = "sample_tasks"
    env.update(extra)
    return env


@dataclass
class Server:
    """One running `scholarsource serve` and what a test needs to talk to it."""

    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for this server, closed at teardown."""
        client = httpx.Client(base_url=self.url, timeout=30, **kwargs)
        self.clients.append(client)
        return client

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict[str, Any]:
        """GET /api/health (any status)."""
        return httpx.get(f"{self.url}/api/health", timeout=5).json()

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        """Block until /api/health answers 200; fail with the server's log otherwise."""

        def healthy() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}/api/health", timeout=2)
            except httpx.HTTPError:
                return None
            return response.json() if response.status_code == 200 else None

        try:
            return wait_until(healthy, timeout, interval=0.1, message="a healthy server")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{self.log()}") from None

    def signal(self, sig: int) -> None:
        """Send `sig` to the master only."""
        self.proc.send_signal(sig)

    def kill_tree(self) -> None:
        """kill -9 every process of the server's session (master, API, pool, slots)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        wait_until(lambda: not _session_alive(self.proc.pid), 10, message="the tree to die")

    def stop(self, timeout: float = 30.0) -> int:
        """TERM, wait, then KILL the whole group; returns the master's exit code."""
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers: slots, forkserver
        except ProcessLookupError:
            pass
        return self.proc.wait(timeout=10)


def _session_alive(sid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] != "Z":
                        return True
            except (OSError, IndexError):
                continue
    return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: serve(slots=2, workers=2, data_dir=..., env={...}, args=[...])."""
    started: list[Server] = []

    def start(*, slots: int = 2, workers: int = 2, data_dir: Path | None = None,
              env: dict[str, str] | None = None, args: tuple[str, ...] = (),
              wait: bool = True) -> Server:
        port = free_port()
        data = data_dir or tmp_path / "data"
        log_path = tmp_path / f"server-{len(started)}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scholarsource", "serve", "--bind", f"127.0.0.1:{port}",
                 "--data-dir", str(data), "--slots", str(slots), "--workers", str(workers),
                 *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=server_env(**(env or {})))
        server = Server(proc, f"http://127.0.0.1:{port}", data, log_path)
        started.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in started:
        server.stop(timeout=15)
