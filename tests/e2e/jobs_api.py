"""Helpers the end-to-end tests share for talking to a server's jobs API."""

from __future__ import annotations

import secrets
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import httpx

from tests.helpers import wait_until

if TYPE_CHECKING:
    from tests.conftest import Server


def submit(client: httpx.Client, task: str, **params: Any) -> dict[str, Any]:
    """POST /api/jobs for `task` with `params`; asserts the 202 and returns the job."""
    response = client.post("/api/jobs", json={"task": task, "params": params})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_running(client: httpx.Client, job_id: str, timeout: float = 10) -> None:
    """Block until the job has started."""
    wait_until(lambda: client.get(f"/api/jobs/{job_id}").json()["status"] == "running",
               timeout, message=f"job {job_id} to start")


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 20) -> dict[str, Any]:
    """Block until the job has ended; returns it."""
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        return job if job["final"] else None

    return wait_until(done, timeout, message=f"job {job_id} to finish")


def all_jobs(client: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    """Every job the listing returns for `query`, following the cursor."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/api/jobs", params={**query, "limit": 1000,
                                               **({"cursor": cursor} if cursor else {})}).json()
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return jobs


def stored(server: Server, job_id: str, *columns: str) -> dict[str, Any]:
    """The job's row as the database holds it (for a job the API may not show, or a server
    that has stopped)."""
    (row,) = query(server, f"SELECT {', '.join(columns)} FROM jobs WHERE id = ?", job_id)
    return dict(zip(columns, row, strict=True))


def write_queued(server: Server, task: str, params_json: str, max_attempts: int = 1) -> str:
    """A queued job written into the database directly, past the API's checks (a job queued
    by an older server, or one the API would refuse today); returns its id. The pool finds
    it at its next poll, or at once after any submit's wake-up."""
    job_id = secrets.token_urlsafe(16)
    query(server, "INSERT INTO jobs (id, tenant, task, queue, status, params, max_attempts, "
                  "created_at) VALUES (?, 'default', ?, 'default', 'queued', ?, ?, ?)",
          job_id, task, params_json, max_attempts, time.time())
    return job_id


def query(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of `sql` (with `?` placeholders) on the server's store, SQLite or
    PostgreSQL, committed: for what the API does not show (rows it deleted, a fire's
    count) or would refuse."""
    if server.database:
        import psycopg

        with psycopg.connect(server.database) as conn:  # commits as the block ends
            cursor = conn.execute(sql.replace("?", "%s"), args)
            return cursor.fetchall() if cursor.description is not None else []
    db = sqlite3.connect(server.data_dir / "scholarsource.db", timeout=30)
    try:
        with db:
            return db.execute(sql, args).fetchall()
    finally:
        db.close()
