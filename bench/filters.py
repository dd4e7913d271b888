"""GET /api/jobs filters without HTTP: does a filtered page cost what an unfiltered one does?

A fresh database (schema.migrate) gets N jobs of one tenant (and N/10 of another) through
`SqliteStore.submit_many`, in a mix of tasks, queues and states where some values are rare
(0.1% of jobs run the task `rare`, 5% sit in the queue `bulk`). Then the statement behind the
first page (50 jobs) of every combination of filters is timed, with values that hurt when the
page reads the wrong index: without an index that starts with the filter, such a page walks
the tenant's history until it has found 50 matches, or all of it. "before" is a database
without schema V6's indexes, running the statement as it was; "after" is the current schema
and statement. The cost of the new indexes on writes is measured too: single-job submits and
claim + finish pairs, one per transaction, on each database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from scholarsource.bench.machine import machine
from scholarsource.store.base import Ending, JobState, NewJob, Outcome
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import LIST_FILTERS, SqliteStore, list_sql

_V6_INDEXES = ("jobs_tenant_task", "jobs_tenant_queue")
# (task, queue, share of jobs)
_MIX = (("noop", "default", 0.55), ("noop", "bulk", 0.05), ("fetch", "io", 0.25),
        ("cpu", "cpu", 0.149), ("rare", "io", 0.001))
# Every combination of filters, each with values that make the page expensive when read
# from the wrong index: rare tasks and queues, live and final states, empty intersections.
CASES: list[dict[str, str]] = [
    {}, {"status": "retrying"}, {"status": "succeeded"},
    {"task": "rare"}, {"task": "never"}, {"task": "cpu"}, {"queue": "bulk"},
    {"status": "retrying", "task": "noop"}, {"status": "succeeded", "task": "rare"},
    {"status": "dead", "task": "noop"}, {"status": "queued", "task": "rare"},
    {"status": "queued", "queue": "bulk"}, {"status": "succeeded", "queue": "bulk"},
    {"task": "rare", "queue": "io"}, {"task": "noop", "queue": "bulk"},
    {"status": "dead", "task": "rare", "queue": "io"},
    {"status": "running", "task": "fetch", "queue": "io"},
]
_BATCH = 10_000


def fill(path: Path, n: int, seed: int = 7) -> None:
    """Create the database with `n` jobs of tenant `default` and n/10 of `other`."""
    migrate(path)
    rng = random.Random(seed)
    kinds = [(task, queue) for task, queue, _ in _MIX]
    weights = [share for _, _, share in _MIX]

    async def submit() -> None:
        store = await SqliteStore.open(path, inline=True)
        try:
            for tenant, count in (("default", n), ("other", n // 10)):
                for start in range(0, count, _BATCH):
                    picks = rng.choices(kinds, weights, k=min(_BATCH, count - start))
                    await store.submit_many([NewJob(task, {}, queue, 0, 3, tenant=tenant)
                                             for task, queue in picks])
        finally:
            await store.close()

    asyncio.run(submit())
    # States as a long-running server leaves them: the history finished, the newest jobs
    # still queued or running. Set directly (the bench shapes data; it serves no one).
    conn = sqlite3.connect(path, isolation_level=None)
    for tenant, first, last in conn.execute("SELECT tenant, min(seq), max(seq) FROM jobs "
                                            "GROUP BY tenant").fetchall():
        conn.execute("""
            UPDATE jobs SET status = CASE
                WHEN seq % 200 = 0 THEN 'retrying' WHEN seq % 33 = 0 THEN 'dead'
                WHEN seq % 50 = 0 THEN 'cancelled' ELSE 'succeeded' END,
                finished_at = created_at + 1
            WHERE tenant = ? AND seq <= ?""", (tenant, first + (last - first) * 97 // 100))
    conn.execute("UPDATE jobs SET status = 'running' WHERE seq IN (SELECT seq FROM jobs "
                 "WHERE tenant = 'default' AND status = 'queued' ORDER BY seq LIMIT ?)",
                 (n // 200,))
    conn.close()


def drop_v5_indexes(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for name in _V6_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    conn.close()


def _pages(path: Path, repeats: int, before: bool) -> dict[str, dict[str, float]]:
    """Median and max milliseconds for the SQL of the first page (50 jobs) of each case: the
    store's statement, or `before`, that statement as it was (no unary + to steer SQLite's
    choice of index)."""
    conn = sqlite3.connect(path)
    out: dict[str, dict[str, float]] = {}
    try:
        for case in CASES:
            status = case.get("status")
            sql = list_sql(set(case), paged=False,
                           finished=status is not None and JobState(status).final)
            if before:
                sql = sql.replace("+", "")
            args = ["default", *(case[name] for name in LIST_FILTERS if name in case), 51]
            conn.execute(sql, args).fetchall()  # warm the page cache
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                rows = conn.execute(sql, args).fetchall()
                times.append((time.perf_counter() - began) * 1000)
            label = "&".join(f"{k}={v}" for k, v in case.items()) or "(none)"
            out[label] = {"median_ms": round(statistics.median(times), 3),
                          "max_ms": round(max(times), 3), "rows": min(len(rows), 50)}
    finally:
        conn.close()
    return out


async def _writes(path: Path, submits: int, pairs: int) -> dict[str, float]:
    """Single-job submits, then claim(1) + finish pairs, per second of this process's CPU
    (what the indexes cost; wall time on a shared box would mostly measure the neighbours)."""
    store = await SqliteStore.open(path, inline=True)
    try:
        began = time.process_time()
        for _ in range(submits):
            await store.submit(NewJob("noop", {}, "default", 0, 1))
        submit_rate = submits / (time.process_time() - began)
        began = time.process_time()
        for _ in range(pairs):
            (claim,) = await store.claim("bench", 1, 30.0)
            await store.finish([Outcome(claim.id, claim.token, Ending.SUCCEEDED)], max_crashes=3)
        return {"submits_per_cpu_s": round(submit_rate), "claim_finish_per_cpu_s":
                round(pairs / (time.process_time() - began))}
    finally:
        await store.close()


def measure(n: int, repeats: int, submits: int, pairs: int) -> dict[str, Any]:
    """Each variant on its own, identically filled database: "before" lacks V6's indexes."""
    results: dict[str, Any] = {"jobs": n, "machine": machine()}
    for variant in ("before", "after"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "filters.db"
            began = time.perf_counter()
            fill(path, n)
            results["fill_s"] = round(time.perf_counter() - began, 1)
            if variant == "before":
                drop_v5_indexes(path)
            results[variant] = _pages(path, repeats, before=variant == "before")
            results[f"{variant}_writes"] = asyncio.run(_writes(path, submits, pairs))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--submits", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = measure(args.jobs, args.repeats, args.submits, args.pairs)
    print(f"{args.jobs} jobs (filled in {results['fill_s']} s); first page of 50, "
          f"median (max) ms over {args.repeats} reads")
    print(f"{'filters':<38} {'before':>16} {'after':>16} {'rows':>5}")
    for label, after in results["after"].items():
        before = results["before"][label]
        print(f"{label:<38} {before['median_ms']:>7.2f} ({before['max_ms']:>6.2f}) "
              f"{after['median_ms']:>7.2f} ({after['max_ms']:>6.2f}) {after['rows']:>5}")
    for key in ("submits_per_cpu_s", "claim_finish_per_cpu_s"):
        print(f"{key:<38} {results['before_writes'][key]:>16} {results['after_writes'][key]:>16}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
