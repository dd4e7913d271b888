"""The drivers' wait for SQLite's write lock (store/busy.py), on a real file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scholarsource.errors import StoreUnavailable
from scholarsource.store import busy, schema
from scholarsource.store.base import NewJob
from scholarsource.store.sqlite import SqliteStore


def _open(path: Path, timeout: float) -> SqliteStore:
    schema.migrate(path)
    return asyncio.run(SqliteStore.open(path, busy_timeout=timeout, inline=True))


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the test's database (q.db, migrated), to hold the write lock."""
    schema.migrate(tmp_path / "q.db")
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None, check_same_thread=False)
    yield conn
    conn.close()


def test_a_statement_that_meets_the_lock_waits_in_short_steps_until_it_is_free(
        tmp_path: Path, holder: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _open(tmp_path / "q.db", 5.0)
    holder.execute("BEGIN IMMEDIATE")
    steps: list[float] = []

    def sleep(seconds: float) -> None:  # the holder lets go after the seventh step
        steps.append(seconds)
        if len(steps) == 7:
            holder.execute("ROLLBACK")

    monkeypatch.setattr(busy.time, "sleep", sleep)
    try:
        asyncio.run(store.submit_many([NewJob("noop", {}, "default", 0, 1)]))
        assert steps == [50e-6] * 7  # a tenth of the time waited, and at least 50 us
        assert holder.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
        # SQLite's own handler is off: its first step alone is 1 ms.
        assert asyncio.run(store._db.fetchall("PRAGMA busy_timeout")) == [(0,)]
    finally:
        asyncio.run(store.close())


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "aiosqlite"])
def test_a_lock_held_past_the_busy_timeout_fails_as_unavailable_and_writes_nothing(
        tmp_path: Path, holder: sqlite3.Connection, inline: bool) -> None:
    schema.migrate(tmp_path / "q.db")
    holder.execute("BEGIN IMMEDIATE")

    async def body() -> None:
        store = await SqliteStore.open(tmp_path / "q.db", busy_timeout=0.2, inline=inline)
        try:
            with pytest.raises(StoreUnavailable, match="database is locked"):
                async with store.batch():
                    await store.submit_many([NewJob("noop", {}, "default", 0, 1)])
            with pytest.raises(StoreUnavailable, match="database is locked"):
                await store.submit_many([NewJob("noop", {}, "default", 0, 1)])
            holder.execute("ROLLBACK")
            assert (await store.counts())["queued"] == 0  # nothing went in; it still works
            await store.submit_many([NewJob("noop", {}, "default", 0, 1)])
            assert (await store.counts())["queued"] == 1
        finally:
            await store.close()

    asyncio.run(body())


def test_each_step_is_a_tenth_of_the_time_waited_within_its_bounds() -> None:
    assert busy.step(0.0, busy.SHORTEST_STEP) == 50e-6
    assert busy.step(0.002, busy.SHORTEST_STEP) == pytest.approx(200e-6)
    assert busy.step(0.0, busy.LOOP_STEP) == busy.step(0.005, busy.LOOP_STEP) == 1e-3
    assert busy.step(0.05, busy.LOOP_STEP) == pytest.approx(5e-3)
    assert busy.step(10.0, busy.SHORTEST_STEP) == 20e-3  # a long hold: few tries


def test_a_long_hold_costs_a_few_hundred_tries_not_a_core(
        tmp_path: Path, holder: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _open(tmp_path / "q.db", 5.0)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.5, holder.execute, ("ROLLBACK",))
    tries = 0
    sleep = busy.time.sleep

    def counted(seconds: float) -> None:
        nonlocal tries
        tries += 1
        sleep(seconds)

    monkeypatch.setattr(busy.time, "sleep", counted)
    release.start()
    try:
        asyncio.run(store.submit_many([NewJob("noop", {}, "default", 0, 1)]))
        # ~60 growing steps to 20 ms, then 20 ms each: ~130; 50 us steps all along: ~15,000.
        assert 20 < tries < 400, tries
    finally:
        release.join()
        asyncio.run(store.close())


@pytest.mark.parametrize(("code", "in_transaction", "again"), [
    (sqlite3.SQLITE_BUSY, False, True),
    (sqlite3.SQLITE_BUSY_RECOVERY, False, True),
    (sqlite3.SQLITE_BUSY_SNAPSHOT, False, True),  # a BEGIN IMMEDIATE after a fresh commit
    (sqlite3.SQLITE_BUSY_SNAPSHOT, True, False),  # a stale snapshot: a retry cannot help
    (sqlite3.SQLITE_BUSY, True, False),
    (sqlite3.SQLITE_LOCKED, False, False),
    (sqlite3.SQLITE_IOERR, False, False),
])
def test_a_refusal_is_tried_again_only_for_the_lock_and_outside_a_transaction(
        code: int, in_transaction: bool, again: bool) -> None:
    exc = sqlite3.OperationalError("refused")
    exc.sqlite_errorcode = code
    assert busy.locked(exc, in_transaction) is again


def test_only_a_refusal_for_the_lock_is_tried_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _open(tmp_path / "q.db", 5.0)
    slept: list[float] = []
    monkeypatch.setattr(busy.time, "sleep", slept.append)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            asyncio.run(store._db.fetchall("SELECT * FROM no_such_table"))
        assert slept == []
    finally:
        asyncio.run(store.close())


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "aiosqlite"])
def test_a_script_waits_with_sqlites_handler_and_leaves_it_off_again(
        tmp_path: Path, holder: sqlite3.Connection, inline: bool) -> None:
    schema.migrate(tmp_path / "q.db")
    store = asyncio.run(SqliteStore.open(tmp_path / "q.db", busy_timeout=5.0, inline=inline))
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
    release.start()
    try:
        # A script is not tried again (a half-run one would run its first part twice):
        # without SQLite's handler it would fail at once here.
        asyncio.run(store._db.raw.script("PRAGMA incremental_vacuum(1)"))
        assert asyncio.run(store._db.fetchall("PRAGMA busy_timeout")) == [(0,)]
    finally:
        release.join()
        asyncio.run(store.close())


def test_an_api_workers_statement_waits_on_its_event_loop_in_millisecond_steps(
        tmp_path: Path, holder: sqlite3.Connection) -> None:
    schema.migrate(tmp_path / "q.db")
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, holder.execute, ("ROLLBACK",))

    async def body() -> int:
        store = await SqliteStore.open(tmp_path / "q.db", busy_timeout=5.0)  # aiosqlite's
        driver = store._db.raw
        tries = 0
        fetch = driver._conn.execute_fetchall

        async def counted(sql: str, params: object) -> object:
            nonlocal tries
            tries += 1
            return await fetch(sql, params)

        driver._conn.execute_fetchall = counted
        try:
            assert await store._db.fetchall("PRAGMA busy_timeout") == [(0,)]
            tries = 0
            release.start()
            ticks = 0

            async def tick() -> None:  # the loop keeps serving others meanwhile
                nonlocal ticks
                while release.is_alive():
                    ticks += 1
                    await asyncio.sleep(0.01)

            ticking = asyncio.create_task(tick())
            await store.submit_many([NewJob("noop", {}, "default", 0, 1)])
            await ticking
            assert ticks >= 5
            return tries
        finally:
            await store.close()

    try:
        tries = asyncio.run(body())
        # SQLite's own handler would have tried once, from its thread, and slept there.
        assert tries >= 10
        assert holder.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    finally:
        release.join()


@pytest.mark.parametrize("transaction", [False, True], ids=["statement", "transaction"])
def test_an_api_workers_reads_go_on_while_its_write_waits_for_the_lock(
        tmp_path: Path, holder: sqlite3.Connection, transaction: bool) -> None:
    async def write(store: SqliteStore) -> None:
        if not transaction:  # one statement: a plain submit
            await store.submit_many([NewJob("noop", {}, "default", 0, 1)])
            return
        async with store.batch():  # BEGIN IMMEDIATE first, as a keyed submit's group does
            await store.submit_many([NewJob("noop", {}, "default", 0, 1)])

    async def body() -> None:
        store = await SqliteStore.open(tmp_path / "q.db", busy_timeout=5.0)  # aiosqlite's
        try:
            (first,) = await store.submit_many([NewJob("noop", {}, "default", 0, 1)])
            holder.execute("BEGIN IMMEDIATE")
            writing = asyncio.create_task(write(store))
            await asyncio.sleep(0.05)
            assert not writing.done()  # it waits for the lock ...
            # ... without holding the connection: reads (which WAL never refuses) go on.
            found = await asyncio.wait_for(store.get("default", first.id), timeout=1.0)
            assert found is not None and found.id == first.id
            assert not writing.done()
            holder.execute("ROLLBACK")
            await asyncio.wait_for(writing, timeout=5.0)
            assert (await store.counts())["queued"] == 2
        finally:
            await store.close()

    asyncio.run(body())
