"""`scholarsource migrate-to URL` (issue 12 §4): a team moving from SQLite to PostgreSQL
keeps its queued work. A real SQLite server leaves queued, delayed, retrying and running
jobs and a paused queue; `migrate-to` copies them; a server on PostgreSQL runs each once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from scholarsource.exitcodes import EXIT_DATA_DIR_IN_USE, EXIT_OK
from tests.conftest import Server, server_env
from tests.e2e.jobs_api import all_jobs, wait_finished
from tests.helpers import wait_until


def _submit(client: httpx.Client, task: str, params: dict[str, Any],
            **fields: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json={"task": task, "params": params, **fields})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _migrate(data_dir: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scholarsource", "migrate-to", url,
                           "--data-dir", str(data_dir), *extra],
                          env=server_env(), capture_output=True, text=True, timeout=60)


def _marks(path: Path) -> Counter[str]:
    """Executions per job id, as the `mark` task wrote them."""
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines)


def _pg_jobs(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert row is not None
        return int(row[0])


def test_queued_work_moves_to_postgres_and_runs_once(
        serve: Callable[..., Server], tmp_path: Path, pg_url: str) -> None:
    config = tmp_path / "scholarsource.toml"
    config.write_text("[queues.work]\n")
    marks, early = tmp_path / "marks", tmp_path / "early"
    sqlite_dir = tmp_path / "sqlite"
    old = serve(slots=2, data_dir=sqlite_dir, args=("--config", str(config)))
    client = old.client()
    assert client.post("/api/queues/work/pause").status_code == 200
    held = [_submit(client, "mark", {"path": str(marks)}, queue="work", priority=p)
            for p in (0, 5, 0)]
    delayed = _submit(client, "mark", {"path": str(marks)}, delay=8)
    retrying = _submit(client, "flaky", {"succeed_on": 2, "after": 6})
    wait_until(lambda: client.get(f"/api/jobs/{retrying['id']}").json()["status"]
               == "retrying", message="the flaky job to wait for its second attempt")
    running = _submit(client, "mark", {"path": str(early), "seconds": 3})
    wait_until(lambda: _marks(early)[running["id"]] == 1, message="the long job to start")

    # While the SQLite server runs, its data directory is locked: nothing is copied.
    refused = _migrate(sqlite_dir, pg_url)
    assert refused.returncode == EXIT_DATA_DIR_IN_USE, refused.stderr
    assert "in use by a running server" in refused.stderr
    assert _pg_jobs(pg_url) == 0

    old.kill_tree()  # a stopped server, which left `running` behind
    moved = [*held, delayed, retrying, running]
    copied = _migrate(sqlite_dir, pg_url)
    assert copied.returncode == EXIT_OK, copied.stderr
    assert copied.stdout.startswith("copied 6 job(s)"), copied.stdout
    assert "1 queue pause(s)" in copied.stdout and "0 job(s) were there already" in copied.stdout
    again = _migrate(sqlite_dir, pg_url)
    assert again.returncode == EXIT_OK and again.stdout.startswith("copied 0 job(s)"), again
    assert "6 job(s) were there already" in again.stdout
    assert _pg_jobs(pg_url) == 6
    assert not marks.exists()  # the SQLite server ran none of them
    with psycopg.connect(pg_url) as conn:  # left running: back in the queue, uncharged
        assert conn.execute("SELECT status, error_code, attempts, crashes FROM jobs "
                            "WHERE id = %s", (running["id"],)).fetchone() == (
            "queued", "interrupted", 1, 0)

    new = serve(slots=2, data_dir=tmp_path / "pg", args=("--config", str(config)),
                env={"SCHOLARSOURCE_DATABASE": pg_url})
    client = new.client()
    assert {j["id"] for j in all_jobs(client)} == {j["id"] for j in moved}
    queues = {q["name"]: q for q in client.get("/api/queues").json()["queues"]}
    assert queues["work"]["paused"] is True and queues["work"]["queued"] == 3
    assert client.post("/api/queues/work/resume").status_code == 200

    done = {job["id"]: wait_finished(client, job["id"], timeout=40) for job in moved}
    assert {job["status"] for job in done.values()} == {"succeeded"}, done
    # Each copied job ran once here: the marks file counts executions, not statuses.
    assert _marks(marks) == Counter({job["id"]: 1 for job in [*held, delayed]})
    assert _marks(early)[running["id"]] == 2  # once on SQLite (killed), once here
    assert (done[running["id"]]["attempts"], done[running["id"]]["crashes"]) == (2, 0)
    assert (done[retrying["id"]]["attempts"], done[retrying["id"]]["result"]) == (2, 2)
    assert done[delayed["id"]]["started_at"] >= delayed["run_at"]
    first = min(done[j["id"]]["started_at"] for j in held)
    assert done[held[1]["id"]]["started_at"] == first  # priority 5 kept its place
    assert time.time() >= delayed["run_at"]
