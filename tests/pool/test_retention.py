"""The Pruner against a real database file: ages per state, the time budget, batch sizing."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from scholarsource.config import Retention
from scholarsource.errors import StoreUnavailable
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
    assert Pruner(Retention(dead=1.0)).interval == 0.1
    assert Pruner(Retention(succeeded=60.0)).interval == 6


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
    """Answers prune with a full batch per entry of `delays`, then with empty ones. Each
    batch takes its delay on a fake clock (the one the Pruner times statements with), so
    that a loaded machine cannot change what the test sees."""

    def __init__(self, delays: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
        self.delays = delays
        self.limits: list[int] = []
        self.now = 0.0
        monkeypatch.setattr(retention.time, "perf_counter", lambda: self.now)

    async def prune(self, state: JobState, before: float, limit: int) -> int:
        self.limits.append(limit)
        if len(self.limits) > len(self.delays):
            return 0
        self.now += self.delays[len(self.limits) - 1]
        return limit

    async def compact(self, max_pages: int) -> bool:
        return False


def test_slow_batches_shrink_the_next_ones_to_the_lock_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore([0.02] * 5, monkeypatch)  # 20 ms a batch whatever its size: 4x budget
    pruner = Pruner(Retention())
    asyncio.run(pruner.run(store, budget=None))  # type: ignore[arg-type]
    # 100 us a job -> 50 a batch; then 400 us, median 250 us -> 20; then 1 ms, median 400 us
    # -> 12; then 2 ms, median 700 us -> 7, held at the floor of 10.
    assert store.limits[:5] == [200, 50, 20, 12, 10]
    assert pruner.batch == retention.MIN_BATCH == 10


def test_fast_batches_grow_the_next_ones_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore([0.0002] * 3, monkeypatch)  # 1 us a job: 5,000 fit in 5 ms
    pruner = Pruner(Retention())
    asyncio.run(pruner.run(store, budget=None))  # type: ignore[arg-type]
    assert store.limits[:3] == [200, retention.MAX_BATCH, retention.MAX_BATCH]


def test_one_slow_statement_does_not_shrink_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # 50 us a job (200 in 10 ms, then 100 in 5 ms), and one statement that also ran an
    # automatic checkpoint (100 ms: 1 ms a job alone, which would mean batches of 5).
    store = FakeStore([0.01, 0.005, 0.1, 0.005], monkeypatch)
    pruner = Pruner(Retention())
    asyncio.run(pruner.run(store, budget=None))  # type: ignore[arg-type]
    assert store.limits[:4] == [200, 100, 100, 100]  # after the slow one: still 100


class RefusingStore:
    async def prune(self, state: JobState, before: float, limit: int) -> int:
        raise StoreUnavailable("database is locked")


def test_a_refusing_store_is_tried_again_at_the_next_interval() -> None:
    pruner = Pruner(Retention(succeeded=100))  # an interval of 10 s
    report = asyncio.run(pruner.run(RefusingStore()))  # type: ignore[arg-type]
    assert (report.done, report.error) == (False, "database is locked")
    assert not pruner.due(time.monotonic() + 5) and pruner.due(time.monotonic() + 10)
