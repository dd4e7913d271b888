"""The baseline: the least a Starlette + aiosqlite app can do for a submit.

One `INSERT ... RETURNING` per POST into a WAL table (synchronous=NORMAL, autocommit through
isolation_level=None), plus GET by id. `execute_fetchall` runs the statement to completion in
one hand-off to aiosqlite's thread, so the write lock is never held across an `await`
(`async with execute() as cur: await cur.fetchone()` holds it until the second hand-off).

Served by the same Gunicorn + Uvicorn-worker setup as ScholarSource, it is the ceiling our
submit path is measured against: DESIGN.md asks for at least 0.8 of it. The database is
named by the BASELINE_DB environment variable; `scholarsource bench --baseline` serves it
as `scholarsource.bench.baseline_app:app`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id         INTEGER PRIMARY KEY,
    task       TEXT NOT NULL,
    params     TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""
INSERT = ("INSERT INTO jobs (task, params, status, created_at) VALUES (?, ?, 'queued', ?) "
          "RETURNING id, task, params, status, created_at")
GET = "SELECT id, task, params, status, created_at FROM jobs WHERE id = ?"


def create_schema(path: str) -> None:
    """Create the table in WAL mode (before the workers start, or idempotently in each)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
    finally:
        conn.close()


def _json(row: Any) -> dict[str, object]:  # an aiosqlite Row: five columns
    id_, task, params, status, created_at = row
    return {"id": id_, "task": task, "params": json.loads(params), "status": status,
            "created_at": created_at}


async def submit(request: Request) -> JSONResponse:
    body = await request.json()
    db: aiosqlite.Connection = request.app.state.db
    args = (body["task"], json.dumps(body.get("params", {})), time.time())
    (row,) = await db.execute_fetchall(INSERT, args)
    return JSONResponse(_json(row), status_code=202)


async def get(request: Request) -> JSONResponse:
    db: aiosqlite.Connection = request.app.state.db
    rows = list(await db.execute_fetchall(GET, (request.path_params["job_id"],)))
    if not rows:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(_json(rows[0]))


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    path = os.environ["BASELINE_DB"]
    create_schema(path)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=5)
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("PRAGMA busy_timeout = 5000")
    app.state.db = db
    try:
        yield
    finally:
        await db.close()


app = Starlette(routes=[
    Route("/api/jobs", submit, methods=["POST"]),
    Route("/api/jobs/{job_id:int}", get, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
], lifespan=lifespan)
