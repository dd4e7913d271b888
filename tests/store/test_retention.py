"""The pruning SQL against a real database file: batch bound, final states only, per-state ages,
what goes with a job, and the space it gives back."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import JobState, NewJob, Store
from scholarsource.store.sqlite import PRUNE
from tests.store.backends import Backend
from tests.store.test_sqlite import failed, job, ok, query_plan, run

SUCCEEDED, CANCELLED, DEAD = JobState.SUCCEEDED, JobState.CANCELLED, JobState.DEAD
FAR = time.time() + 3600  # "finished before an hour from now": every finished job


async def one_of_each(store: Store) -> dict[str, str]:
    """A job in every state; returns state -> job id."""
    ids = {}
    for state in ("succeeded", "dead", "retrying", "running"):
        new = await store.submit(job(attempts=3 if state == "retrying" else 1))
        (claim,) = await store.claim("p", 1, 30)
        if state == "succeeded":
            await store.finish([ok(claim.id, claim.token)], max_crashes=3)
        elif state in ("dead", "retrying"):
            await store.finish([failed(claim.id, claim.token, due_in=60)], max_crashes=3)
        ids[state] = new.id
    ids["cancelled"] = (await store.submit(job())).id
    await store.cancel("default", ids["cancelled"])
    ids["queued"] = (await store.submit(job())).id
    for state, job_id in ids.items():
        found = await store.get("default", job_id)
        assert found is not None and found.status == state
    return ids


async def backdate(backend: Backend, store: Store, job_id: str, seconds: float) -> None:
    """Make a job look older (created and finished `seconds` earlier)."""
    # Job ids are URL-safe base64: safe to write into the statement.
    await backend.query(store, f"UPDATE jobs SET created_at = created_at - {seconds}, "
                        f"started_at = started_at - {seconds}, "
                        f"finished_at = finished_at - {seconds} WHERE id = '{job_id}'")


def test_only_final_states_are_pruned(tmp_path: Path, backend: Backend) -> None:
    db = tmp_path / "q.db"

    async def body(store: Store) -> None:
        ids = await one_of_each(store)
        for job_id in ids.values():
            await backdate(backend, store, job_id, 365 * 86400)
        for state in (SUCCEEDED, CANCELLED, DEAD):
            assert await store.count_expired(state, FAR) == 1
            assert await store.prune(state, FAR, 100) == 1
            assert await store.get("default", ids[state.value]) is None
        for state in ("queued", "running", "retrying"):  # old, but not finished: they stay
            assert await store.get("default", ids[state]) is not None
        assert sum((await store.counts()).values()) == 3

    run(db, body, backend)


def test_a_batch_deletes_at_most_its_limit_oldest_first(tmp_path: Path, backend: Backend) -> None:
    db = tmp_path / "q.db"

    async def body(store: Store) -> None:
        news = await store.submit_many([job() for _ in range(7)])
        for claim in await store.claim("p", 7, 30):
            await store.finish([ok(claim.id, claim.token)], max_crashes=3)
        for age, new in enumerate(news):  # news[0] finished 0 s ago, news[6] 6 hours ago
            await backdate(backend, store, new.id, age * 3600)
        assert await store.prune(SUCCEEDED, FAR, 3) == 3
        left = {j.id for j in (await store.list_jobs("default"))[0]}
        assert left == {n.id for n in news[:4]}  # the three oldest went first
        assert await store.prune(SUCCEEDED, FAR, 3) == 3
        assert await store.prune(SUCCEEDED, FAR, 3) == 1
        assert await store.prune(SUCCEEDED, FAR, 3) == 0

    run(db, body, backend)


def test_each_state_has_its_own_age(tmp_path: Path, backend: Backend) -> None:
    db = tmp_path / "q.db"

    async def body(store: Store) -> None:
        ids = await one_of_each(store)
        for state in ("succeeded", "cancelled", "dead"):
            await backdate(backend, store, ids[state], 2 * 86400)  # all three finished two days ago
        now = time.time()
        # Succeeded jobs kept one day, dead ones three: only the succeeded one is old enough.
        assert await store.count_expired(SUCCEEDED, now - 86400) == 1
        assert await store.count_expired(DEAD, now - 3 * 86400) == 0
        assert await store.prune(DEAD, now - 3 * 86400, 100) == 0
        assert await store.prune(SUCCEEDED, now - 86400, 100) == 1
        assert await store.get("default", ids["dead"]) is not None
        assert await store.get("default", ids["succeeded"]) is None
        assert await store.prune(CANCELLED, now - 3 * 86400, 100) == 0
        assert await store.prune(CANCELLED, now - 86400, 100) == 1

    run(db, body, backend)


def test_events_and_the_idempotency_key_go_with_the_job(tmp_path: Path, backend: Backend) -> None:
    db = tmp_path / "q.db"

    async def body(store: Store) -> None:
        keyed = NewJob(task="noop", params={}, queue="default", priority=0, max_attempts=1,
                       idempotency_key="order-42")
        first, _ = await store.submit_once(keyed)
        (claim,) = await store.claim("p", 1, 30)
        await store.finish([ok(claim.id, claim.token)], max_crashes=3)
        assert len(await store.events("default", first.id)) == 2  # running, succeeded
        assert await store.prune(SUCCEEDED, FAR, 10) == 1
        assert await backend.query(
            store, f"SELECT count(*) FROM job_events WHERE job_id = '{first.id}'") == [(0,)]
        second, reused = await store.submit_once(keyed)
        assert reused is None and second.id != first.id

    run(db, body, backend)


def test_pruning_reads_one_index_range_and_never_sorts(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    plan = query_plan(conn, PRUNE, {"state": "succeeded", "before": 0, "limit": 1})
    conn.close()
    assert "USING COVERING INDEX jobs_expiry (status=? AND finished_at<?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def auto_vacuum(db: Path) -> int:
    # A fresh connection each time: an open one keeps the mode it read when it opened.
    conn = sqlite3.connect(db)
    mode: int = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    conn.close()
    return mode


def file_pages(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.close()
    return pages, free


def test_a_new_database_gives_pruned_space_back(tmp_path: Path, inline: bool) -> None:
    db = tmp_path / "q.db"

    async def body(store: Store) -> None:
        assert auto_vacuum(db) == 2  # incremental
        big = {"blob": "x" * 2000}
        await store.submit_many([NewJob("noop", big, "default", 0, 1) for _ in range(2000)])
        for claim in await store.claim("p", 2000, 30):
            await store.finish([ok(claim.id, claim.token)], max_crashes=3)
        full, _ = file_pages(db)
        while await store.prune(SUCCEEDED, FAR, 500):
            pass
        assert file_pages(db)[0] == full  # pruned pages are free, not yet given back
        rounds = 0
        while await store.compact(max_pages=256):
            rounds += 1
        assert rounds >= 2  # 256 pages at most per call: each call is a short lock
        pages, free = file_pages(db)
        assert pages < full / 3 and free <= (pages - free) // 4, (full, pages, free)
        assert not await store.compact(max_pages=256)  # nothing left to give

    run(db, body, inline=inline)


def test_vacuum_converts_an_older_database(tmp_path: Path, inline: bool) -> None:
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)  # made before auto_vacuum was set
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.close()

    async def body(store: Store) -> None:
        assert auto_vacuum(db) == 0  # migrating kept it
        await store.vacuum()
        assert auto_vacuum(db) == 2  # incremental

    run(db, body, inline=inline)
