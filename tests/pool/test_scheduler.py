"""Periodic jobs against a real database file, on a fake clock: fire times, one job per fire
whoever fires it, pauses, and catch-up after downtime."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scholarsource.config import Config, Schedule
from scholarsource.errors import StoreUnavailable, TaskError
from scholarsource.pool import scheduler
from scholarsource.pool.scheduler import Scheduler, check_schedules, latest_fire, next_fire
from scholarsource.store import schema
from scholarsource.store import sqlite as sqlite_store
from scholarsource.store.base import NewJob, TaskDefaults
from scholarsource.store.sqlite import SqliteStore

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
TASKS = [TaskDefaults("echo", "default", None, None), TaskDefaults("noop", "default", None, None)]


class Clock:
    """Stands in for the scheduler's `time` module."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(NOON)
    monkeypatch.setattr(scheduler, "time", fake)
    return fake


def run(db: Path, body: Callable[[SqliteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        schema.migrate(db)
        store = await SqliteStore.open(db, inline=True)
        await store.publish_tasks(TASKS)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def fires(db: Path) -> list[tuple[str, float, int]]:
    """(schedule, scheduled_for, jobs) for every fire in the database."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT schedule, scheduled_for, count(*) FROM jobs "
                            "WHERE schedule IS NOT NULL GROUP BY 1, 2 ORDER BY 2").fetchall()
    finally:
        conn.close()


def config(**schedule: Any) -> Config:
    return Config(schedules=(Schedule(**{"name": "s", "task": "noop", **schedule}),))


def test_every_fires_at_multiples_of_its_period() -> None:
    every = Schedule("s", "noop", every=30)
    assert next_fire(every, NOON) == NOON + 30
    assert next_fire(every, NOON + 1) == NOON + 30
    assert latest_fire(every, NOON) == NOON
    assert latest_fire(every, NOON + 29.9) == NOON


def test_cron_fires_in_its_timezone() -> None:
    hourly = Schedule("s", "noop", cron="0 * * * *")
    assert latest_fire(hourly, NOON) == NOON  # `until` itself may be a fire
    assert latest_fire(hourly, NOON - 1) == NOON - 3600
    assert next_fire(hourly, NOON) == NOON + 3600
    # 9:00 in Paris is 8:00 UTC in March (CET, before the switch to summer time).
    paris = Schedule("s", "noop", cron="0 9 * * *", timezone="Europe/Paris")
    assert next_fire(paris, NOON) == NOON + 20 * 3600


def test_a_fire_makes_one_job_however_often_it_is_fired(tmp_path: Path) -> None:
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> None:
        new = NewJob("noop", {}, "default", 0, 1, schedule="s", scheduled_for=NOON)
        first = await store.fire(new, "s", NOON)
        again = await store.fire(new, "s", NOON)
        assert first is not None and first.scheduled_for == NOON and again is None
        # A second pool on its own connection (two masters racing) is refused by the schema.
        other = await SqliteStore.open(db, inline=False)
        assert await other.fire(new, "s", NOON) is None
        await other.close()
        # A manual trigger at the same instant is no fire of the schedule: it runs too.
        await store.submit(dataclasses.replace(new, triggered=True))

    run(db, body)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), sum(triggered) FROM jobs").fetchone() == (2, 1)


def test_a_fire_cut_short_leaves_nothing_and_runs_once_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the job's insert and the schedule's bookkeeping: one transaction,
    so neither is left, and the next attempt makes the one job."""
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> None:
        new = NewJob("noop", {}, "default", 0, 1, schedule="s", scheduled_for=NOON)
        with monkeypatch.context() as patch:
            patch.setattr(sqlite_store, "FIRE_CURSOR", "UPDATE no_such_table SET x = 1")
            with pytest.raises(StoreUnavailable):
                await store.fire(new, "s", NOON)
        assert fires(db) == []
        assert (await store.schedule_states("default", ["s"]))["s"].cursor is None
        assert await store.fire(new, "s", NOON) is not None

    run(db, body)
    assert fires(db) == [("s", NOON, 1)]


def test_two_pools_firing_together_make_one_job_per_fire(tmp_path: Path, clock: Clock) -> None:
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> None:
        pools = [Scheduler(config(every=10)), Scheduler(config(every=10))]
        for step in range(1, 6):
            clock.now = NOON + 10 * step
            for pool in pools:
                await pool.run(store)
                await pool.run(store)

    run(db, body)
    assert fires(db) == [("s", NOON + 10 * step, 1) for step in range(1, 6)]


def test_the_scheduler_wakes_for_the_next_fire(tmp_path: Path, clock: Clock) -> None:
    async def body(store: SqliteStore) -> None:
        pool = Scheduler(config(every=10))
        assert pool.due()
        clock.now = NOON + 3
        await pool.run(store)
        assert not pool.due() and pool.deadlines() == [NOON + 10]
        clock.now = NOON + 10
        assert pool.due()

    run(tmp_path / "q.db", body)


@pytest.mark.parametrize(("catch_up", "expected"), [
    ("latest", [NOON + 10, NOON + 60, NOON + 70]),  # after downtime: the latest missed, once
    ("none", [NOON + 10, NOON + 70]),  # the missed ones are skipped
])
def test_catch_up_after_downtime(tmp_path: Path, clock: Clock, catch_up: str,
                                 expected: list[float]) -> None:
    async def body(store: SqliteStore) -> None:
        clock.now = NOON + 5
        first = Scheduler(config(every=10, catch_up=catch_up))
        clock.now = NOON + 10
        await first.run(store)
        # Down from NOON + 10 to here: fires at 20 ... 60 missed, 60 by more than half a
        # period (what "none" still runs).
        clock.now = NOON + 66
        await Scheduler(config(every=10, catch_up=catch_up)).run(store)
        clock.now = NOON + 70
        await Scheduler(config(every=10, catch_up=catch_up)).run(store)

    run(tmp_path / "q.db", body)
    assert [at for _, at, _ in fires(tmp_path / "q.db")] == expected


def test_a_new_schedule_does_not_fire_for_the_time_before_it(tmp_path: Path,
                                                             clock: Clock) -> None:
    async def body(store: SqliteStore) -> None:
        clock.now = NOON + 5
        pool = Scheduler(config(every=10))
        await pool.run(store)
        assert fires(tmp_path / "q.db") == []
        clock.now = NOON + 10
        await pool.run(store)

    run(tmp_path / "q.db", body)
    assert fires(tmp_path / "q.db") == [("s", NOON + 10, 1)]


def test_a_paused_schedule_stays_paused_for_a_new_pool_and_resumes_from_now(
        tmp_path: Path, clock: Clock) -> None:
    async def body(store: SqliteStore) -> None:
        await Scheduler(config(every=10)).run(store)
        await store.set_paused("s", True, clock.now)
        clock.now = NOON + 30
        await Scheduler(config(every=10)).run(store)  # a restarted pool
        states = await store.schedule_states("default", ["s"])
        assert states["s"].paused and states["s"].last_job_id is None
        clock.now = NOON + 35
        await store.set_paused("s", False, clock.now)
        await Scheduler(config(every=10)).run(store)  # NOON + 30 was paused: not caught up
        clock.now = NOON + 40
        await Scheduler(config(every=10)).run(store)
        state = (await store.schedule_states("default", ["s"]))["s"]
        assert not state.paused and state.last_fire == NOON + 40

    run(tmp_path / "q.db", body)
    assert fires(tmp_path / "q.db") == [("s", NOON + 40, 1)]


def test_a_schedule_naming_an_unknown_task_refuses_the_boot() -> None:
    tasks = {t.name: t for t in TASKS}
    check_schedules(config(every=10, task="echo"), tasks)
    with pytest.raises(TaskError, match="schedule 's': task: no task named 'ehco'.*'echo'"):
        check_schedules(config(every=10, task="ehco"), tasks)
    with pytest.raises(TaskError, match="schedule 's': queue"):
        check_schedules(config(every=10, queue="no spaces"), tasks)
