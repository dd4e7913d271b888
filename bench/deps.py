"""Dependencies: what releasing a parent's children costs, and how soon a child starts.

release: a fresh SQLite database (or, with --postgres, a fresh PostgreSQL database) holds W
jobs waiting on a parent that never ends (W = 10, then 100,000). Then, K times, one parent
and its one child are submitted, the parent is claimed and finished (the finish releases the
child, in its transaction: the jobs_release trigger), and the child is claimed and finished
in turn; the parent's finish is timed, and so is, as the baseline, the finish of a job that
has no children. If the release scanned the waiting jobs, the finish would grow with W.
SQLite runs on the inline driver (the pool's), so the figure is the SQL's own cost.

latency: a real `scholarsource serve` (fresh data dir, --slots 2) runs C workflows of two
no-op steps (parent, then child), a few at a time; for each, the child's `started_at` minus
the parent's `finished_at` (both written by the pool) is the time from a parent's finish to
its child's start: median, p90, max.

    .venv/bin/python bench/deps.py release --waiting 10 100000 --rounds 2000
    .venv/bin/python bench/deps.py release --postgres postgresql://postgres@/postgres?host=...
    .venv/bin/python bench/deps.py latency --chains 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

from scholarsource.launcher import free_port, launch, serve_argv
from scholarsource.store.base import Ending, NewJob, Outcome, Store
from scholarsource.store.postgres import PostgresStore
from scholarsource.store.postgres import schema as pg_schema
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

_BATCH = 50_000


def _job(*parents: str) -> NewJob:
    return NewJob("noop", {}, "default", 0, 1, depends_on=parents)


async def _run_one(store: Store) -> None:
    """Claim the one queued job and finish it."""
    (claim,) = await store.claim("bench", 1, 60)
    await store.finish([Outcome(claim.id, claim.token, Ending.SUCCEEDED, result_json="1")], 3)


async def _timed_finish(store: Store) -> float:
    (claim,) = await store.claim("bench", 1, 60)
    began = time.perf_counter()
    await store.finish([Outcome(claim.id, claim.token, Ending.SUCCEEDED, result_json="1")], 3)
    return time.perf_counter() - began


@contextlib.asynccontextmanager
async def _store(postgres: str | None) -> AsyncIterator[Store]:
    """A fresh store: a SQLite file (inline driver), or a new database on the PostgreSQL
    server of `postgres` (dropped after)."""
    if postgres is None:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "deps.db"
            migrate(path)
            store: Store = await SqliteStore.open(path, inline=True)
            try:
                yield store
            finally:
                await store.close()
        return
    name = f"bench_deps_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(postgres, dbname=name)
    try:
        pg_schema.migrate(url)
        store = await PostgresStore.open(url, role="pool")
        try:
            yield store
        finally:
            await store.close()
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def release(waiting: int, rounds: int, postgres: str | None = None) -> dict[str, Any]:
    """Per-finish microseconds with and without a child to release, beside `waiting` jobs."""
    async with _store(postgres) as store:
        (blocker,) = await store.submit_many([NewJob("noop", {}, "held", 0, 1)])
        await store.pause_queue("held", True)  # the blocker never starts: they all wait
        for start in range(0, waiting, _BATCH):
            await store.submit_many([_job(blocker.id)] * min(_BATCH, waiting - start))
        if isinstance(store, PostgresStore):
            # As autovacuum does within its naptime: without statistics PostgreSQL plans
            # even a plain finish as a scan of the jobs (bench/README.md).
            await store._db.fetchall("ANALYZE")
        parent_finish, plain_finish = [], []
        for _ in range(rounds):
            (parent,) = await store.submit_many([_job()])
            await store.submit_many([_job(parent.id)])
            parent_finish.append(await _timed_finish(store))  # releases the child
            await _run_one(store)  # the child
            await store.submit_many([_job()])
            plain_finish.append(await _timed_finish(store))
        counts = await store.counts()
    assert counts["waiting"] == waiting, counts
    return {"store": "postgres" if postgres else "sqlite", "waiting": waiting, "rounds": rounds,
            "finish_with_child_us": _summary(parent_finish),
            "finish_alone_us": _summary(plain_finish)}


def _summary(seconds: list[float]) -> dict[str, float]:
    micros = sorted(s * 1e6 for s in seconds)
    return {"p50": round(statistics.median(micros), 1),
            "p90": round(micros[int(len(micros) * 0.9)], 1),
            "mean": round(statistics.fmean(micros), 1)}


def latency(chains: int, concurrency: int) -> dict[str, Any]:
    """Seconds from a parent's finish to its child's start, through a real server."""
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        server = launch(serve_argv(port, Path(scratch) / "data", workers=2, slots=2),
                        url=f"http://127.0.0.1:{port}", log_path=Path(scratch) / "server.log",
                        env=dict(os.environ))
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client, \
                    ThreadPoolExecutor(concurrency) as pool:
                gaps = list(pool.map(lambda _: _one_chain(client), range(chains)))
        finally:
            server.stop()
    gaps.sort()
    return {"chains": chains, "concurrency": concurrency,
            "finish_to_start_ms": {"p50": round(statistics.median(gaps) * 1e3, 2),
                                   "p90": round(gaps[int(len(gaps) * 0.9)] * 1e3, 2),
                                   "max": round(gaps[-1] * 1e3, 2)}}


def _one_chain(client: httpx.Client) -> float:
    made = client.post("/api/workflows", json={"steps": {
        "parent": {"task": "noop"}, "child": {"task": "noop", "after": ["parent"]}}})
    made.raise_for_status()
    path = f"/api/workflows/{made.json()['id']}"
    while not (flow := client.get(path).json())["final"]:
        time.sleep(0.02)
    parent = client.get(f"/api/jobs/{flow['steps']['parent']['id']}").json()
    child = client.get(f"/api/jobs/{flow['steps']['child']['id']}").json()
    gap: float = child["started_at"] - parent["finished_at"]
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rel = sub.add_parser("release")
    rel.add_argument("--waiting", type=int, nargs="+", default=[10, 100_000])
    rel.add_argument("--rounds", type=int, default=2000)
    rel.add_argument("--postgres", metavar="URL",
                     help="a PostgreSQL server (its maintenance database) to bench instead of "
                          "SQLite: each run gets a database of its own, dropped after")
    lat = sub.add_parser("latency")
    lat.add_argument("--chains", type=int, default=300)
    lat.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.what == "release":
        for waiting in args.waiting:
            print(asyncio.run(release(waiting, args.rounds, args.postgres)), flush=True)
    else:
        print(latency(args.chains, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
