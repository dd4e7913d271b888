"""The Pruner against a real database file: ages per state, the time budget, batch sizing."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from scholarsource.config import Retention
from scholarsource.pool import retention
from scholarsource.pool.retention import Pruner
from scholarsource.store import schema
from scholarsource.store.base import JobState, NewJob
from scholarsource.store.sqlite import SqliteStore
from tests.store.test_sqlite import ok

DAY = 86400.0


async def finished_jobs(store: SqliteStore, n: int, days_ago: float, db: Path) -> list[str]:
    """`n` succeeded jobs that finished `days_ago` days ago."""
    news = await store.submit_many([NewJob("noop", {}, "default", 0, 1) for _ in range(n)])
    for claim in await store.claim("p", n, 30):
        await store.finish([ok(claim.id, claim.token)], max_crashes=3)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE id IN "
                 "(SELECT value FROM json_each(?))",
                 (days_ago * DAY, "[" + ",".join(f'"{j.id}"' for j in news) + "]"))
    conn.close()
    return [j.id for j in news]


def run(db: Path, body: Any) -> None:
    async def main() -> None:
        schema.migrate(db)
        store = await SqliteStore.open(db, inline=True)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_run_deletes_what_is_past_its_age_and_keeps_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> None:
        old = await finished_jobs(store, 450, days_ago=3, db=db)
        young = await finished_jobs(store, 5, days_ago=1, db=db)
        pruner = Pruner(Retention(succeeded=2 * DAY))
        assert await pruner.count(store) == {"succeeded": 450, "cancelled": 0, "dead": 0}
        report = await pruner.run(store, budget=None)
        assert report.done and report.deleted == {"succeeded": 450, "cancelled": 0, "dead": 0}
        assert report.batches >= 3  # 450 jobs, 200 at most in the first batch
        for job_id in old:
            assert await store.get("default", job_id) is None
        for job_id in young:
            assert await store.get("default", job_id) is not None
        assert not pruner.due(time.monotonic())  # next in interval: one minute at most
        assert pruner.due(time.monotonic() + 60)

    run(db, body)


def test_the_interval_follows_the_shortest_age() -> None:
    assert Pruner(Retention()).interval == 60
    assert Pruner(Retention(dead=1.0)).interval == 0.5


def test_a_run_out_of_time_leaves_the_rest_for_the_next_turn(tmp_path: Path) -> None:
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> None:
        await finished_jobs(store, 50, days_ago=30, db=db)
        pruner = Pruner(Retention(succeeded=DAY))
        report = await pruner.run(store, budget=0)
        assert not report.done and report.total == 0
        assert pruner.due(time.monotonic() + 0.01)  # a backlog comes back soon
        report = await pruner.run(store, budget=None)
        assert report.done and report.total == 50

    run(db, body)


class FakeStore:
    """Answers prune with `full` full batches, then empty ones, each taking `delay` s."""

    def __init__(self, delay: float, full: int) -> None:
        self.delay, self.full = delay, full
        self.limits: list[int] = []

    async def prune(self, state: JobState, before: float, limit: int) -> int:
        self.limits.append(limit)
        time.sleep(self.delay)  # a statement blocks its thread: that is what is measured
        return limit if len(self.limits) <= self.full else 0

    async def compact(self, max_pages: int) -> bool:
        return False


def test_a_slow_batch_halves_the_next() -> None:
    store = FakeStore(delay=0.02, full=5)  # four times the lock budget of one batch
    pruner = Pruner(Retention())
    asyncio.run(pruner.run(store, budget=None))  # type: ignore[arg-type]
    # Five full batches of succeeded jobs, one empty, then one empty for each other state.
    assert store.limits == [200, 100, 50, 25, 12, 10, 10, 10]
    assert pruner.batch == retention.MIN_BATCH == 10


def test_a_fast_full_batch_doubles_the_next_up_to_the_cap() -> None:
    store = FakeStore(delay=0, full=7)
    pruner = Pruner(Retention())
    asyncio.run(pruner.run(store, budget=None))  # type: ignore[arg-type]
    assert store.limits == [200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000]
    assert pruner.batch == retention.MAX_BATCH == 5000
