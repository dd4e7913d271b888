"""Run a server as a child process and always stop it: for the tests and the bench.

The child runs in its own session (so one signal reaches its whole tree), logs to a file
(never an undrained pipe), and is stopped with TERM, a wait, then KILL of the whole process
group, so no worker, pool or slot outlives whoever started it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_argv(port: int, data_dir: Path, *, workers: int | None, slots: int | None,
               extra: tuple[str, ...] = ()) -> list[str]:
    """The command line of `python -m scholarsource serve` on 127.0.0.1:`port`; a size of
    None is left to the config (or the server's own sizing)."""
    sizes = [f"--{name}={value}" for name, value in (("workers", workers), ("slots", slots))
             if value is not None]
    return [sys.executable, "-m", "scholarsource", "serve", "--bind", f"127.0.0.1:{port}",
            "--data-dir", str(data_dir), *sizes, *extra]


@dataclass
class ServerProcess:
    """A server started by `launch`: its master process, URL and log file."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    ready_path: str = "/api/health"

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until `ready_path` answers 200; raise RuntimeError with the log otherwise."""
        deadline = time.monotonic() + timeout
        # One client for the whole wait: a new httpx client builds a TLS context (~25 ms of
        # CPU, far more than the request), and every test and bench start waits here.
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.proc.returncode}:\n"
                                       f"{self.log()}")
                try:
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"the server was not ready after {timeout}s:\n{self.log()}")

    def kill_group(self) -> None:
        """SIGKILL every process of the server's session that is still there."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 30.0) -> int | None:
        """TERM the master, wait up to `timeout`, then KILL the group; returns the master's
        exit code (None if even KILL did not end it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()  # stragglers: slots, the forkserver
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None


def launch(argv: list[str], *, url: str, log_path: Path, env: dict[str, str],
           ready_path: str = "/api/health", wait: bool = True,
           timeout: float = 60.0, cwd: Path | None = None) -> ServerProcess:
    """Start `argv` in its own session (in `cwd`, default ours); with `wait`, return once it
    is ready (and stop it again if it never gets there)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                cwd=cwd)
    server = ServerProcess(proc, url, log_path, ready_path)
    if wait:
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop(timeout=5)
            raise
    return server
