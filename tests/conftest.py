"""Fixtures are factories that clean up what they made.

`serve()` starts a real `python -m scholarsource serve` (real Gunicorn, real pool processes,
a real SQLite file) on a free port and a temporary data directory, through
`scholarsource.launcher`: its own process session and a log file; at teardown, the test
being over, the whole session is killed (kill -9). A test marked `both_backends` runs
twice: on SQLite and on a fresh PostgreSQL database of the throwaway cluster
(tests/pgcluster.py).
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from scholarsource.launcher import ServerProcess, free_port, launch, serve_argv
from tests.helpers import wait_until

TESTS_DIR = Path(__file__).parent
# One TLS context for every test client: httpx builds one per client otherwise, ~25 ms of
# CPU (more than most requests), and the tests make hundreds of clients.
TLS = ssl.create_default_context()
# pg_cluster and pg_url: a throwaway PostgreSQL cluster for the tests that need one.
pytest_plugins = ("tests.pgcluster",)


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a server under test: ours, minus any SCHOLARSOURCE_* settings,
    with the sample tasks importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env["SCHOLARSOURCE_TASK_MODULES"] = "sample_tasks"
    # The tests run cpu, memory and crash, which a default server does not expose.
    env["SCHOLARSOURCE_BUILTIN_TASKS"] = "all"
    env.update(extra)
    return env


@dataclass
class Server(ServerProcess):
    """One running `scholarsource serve` and what a test needs to talk to it."""

    data_dir: Path = Path()
    database: str = ""  # SCHOLARSOURCE_DATABASE: "" for SQLite in data_dir
    clients: list[httpx.Client] = field(default_factory=list)
    probe: httpx.Client | None = None  # health()'s client, made on first use

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for this server, closed at teardown."""
        client = httpx.Client(base_url=self.url, timeout=30, verify=TLS, **kwargs)
        self.clients.append(client)
        return client

    def fresh_client(self) -> httpx.Client:
        """A client for requests across a HUP: one connection per request, and one retry of
        a request whose connection was reset before any answer. A worker being replaced
        closes the connections it holds that have no request in progress (uvicorn's
        shutdown), kept-alive ones and one it accepted an instant before; such a request
        never reached the app, so sending it again cannot make a second job."""
        return self.client(limits=httpx.Limits(max_keepalive_connections=0),
                           transport=_RetryOnReset(verify=TLS))

    def cli_env(self) -> dict[str, str]:
        """The environment for a `scholarsource` command against this server's store."""
        return server_env(**({"SCHOLARSOURCE_DATABASE": self.database} if self.database else {}))

    def health(self) -> dict[str, Any]:
        """GET /api/health (any status). One client for all its calls, a `fresh_client`:
        tests ask it across kills and reloads."""
        if self.probe is None:
            self.probe = self.fresh_client()
        return self.probe.get("/api/health", timeout=5).json()

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        """Block until /api/health answers 200 and lists every API worker; fail with the
        server's log otherwise. (Gunicorn forks its workers up to 0.1 s apart: the first
        can answer before the last exists, and a test would take that for a lost one.)"""
        try:
            self.wait_ready(timeout)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None

        def every_worker() -> dict[str, Any] | None:
            health = self.health()
            if "processes" not in health:  # auth = "keys": pids are for an admin key only
                return health
            return health if len(health["processes"]["api"]) >= health["workers"] else None

        return wait_until(every_worker, timeout, message="every API worker to start")

    def signal(self, sig: int) -> None:
        """Send `sig` to the master only."""
        self.proc.send_signal(sig)

    def kill_tree(self) -> None:
        """kill -9 every process of the server's session (master, API, pool, slots)."""
        self.kill_group()
        self.proc.wait(timeout=10)
        wait_until(lambda: not _session_alive(self.proc.pid), 10, message="the tree to die")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Close the test's clients, then TERM, wait, KILL the group."""
        self._close_clients()
        return super().stop(timeout)

    def discard(self) -> None:
        """Close the test's clients, then kill -9 the tree: for a server whose test is over."""
        self._close_clients()
        self.kill_tree()

    def _close_clients(self) -> None:
        for client in self.clients:
            client.close()


class _RetryOnReset(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            return super().handle_request(request)


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `both_backends` that starts a server runs on each store."""
    if ("database" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("both_backends") is not None):
        metafunc.parametrize("database", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store `serve` uses: "" for SQLite in data_dir; on the `postgres` pass of a
    `both_backends` test, the URL of a fresh database, dropped after the test's servers."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield ""
        return
    # Imported here: a plugin module imported before pytest registers it is not rewritten.
    from tests.pgcluster import drop_database, fresh_database

    cluster = request.getfixturevalue("pg_cluster")
    url = fresh_database(cluster)
    try:
        yield url
    finally:
        drop_database(cluster, url)


@pytest.fixture
def serve(tmp_path: Path, database: str) -> Iterator[Callable[..., Server]]:
    """Factory: serve(slots=2, workers=2, data_dir=..., env={...}, args=[...])."""
    started: list[Server] = []

    def start(*, slots: int = 2, workers: int = 2, data_dir: Path | None = None,
              env: dict[str, str] | None = None, args: tuple[str, ...] = (),
              wait: bool = True) -> Server:
        port = free_port()
        data = data_dir or tmp_path / "data"
        settings = {"SCHOLARSOURCE_DATABASE": database} if database else {}
        settings.update(env or {})
        process = launch(serve_argv(port, data, workers=workers, slots=slots, extra=args),
                         url=f"http://127.0.0.1:{port}",
                         log_path=tmp_path / f"server-{len(started)}.log",
                         env=server_env(**settings), wait=False)
        server = Server(process.proc, process.url, process.log_path, data_dir=data,
                        database=settings.get("SCHOLARSOURCE_DATABASE", ""))
        started.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    # The test is over and asserted what it needed, so kill -9 the tree instead of a
    # graceful stop (0.5-1 s per server, ~300 servers a run). The tests of stopping
    # (test_shutdown.py, test_faults.py, ...) stop their servers themselves and check it.
    # One that cannot be killed must not leave the others running.
    with contextlib.ExitStack() as stack:
        for server in started:
            stack.callback(server.discard)
