"""Job states a client reads right (`final`, `retrying`, `scheduled`) and delayed jobs, at the
store: the V9 migration of old `failed` rows, and promote's one statement and its index."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import FINAL_STATES, JobState, Store
from scholarsource.store.sqlite import NEXT_DUE, PROMOTE, WALK_ORDER
from tests.store.backends import Backend
from tests.store.test_sqlite import failed, job, query_plan, run


def _plan(db: Path, sql: str, args: tuple[object, ...] | dict[str, object]) -> str:
    conn = sqlite3.connect(db)
    try:
        return query_plan(conn, sql, args)
    finally:
        conn.close()


def test_final_is_true_for_succeeded_dead_and_cancelled_only() -> None:
    assert {state for state in JobState if state.final} == FINAL_STATES == {
        JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}
    assert "failed" not in {state.value for state in JobState}


def test_an_old_database_with_failed_rows_migrates_them_to_retrying(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, migration in enumerate(schema.MIGRATIONS[:7], start=1):  # as main left it
        conn.executescript(f"BEGIN;\n{migration}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("INSERT INTO jobs (seq, id, tenant, task, queue, status, params, created_at) "
                 "VALUES (1, 'w', 'default', 'noop', 'default', 'queued', '{}', 0), "
                 "(2, 'd', 'default', 'noop', 'default', 'queued', '{}', 0)")
    # One job fails and waits for its next attempt, as the old FINISH left it; one is dead.
    conn.execute("UPDATE jobs SET status = 'failed', run_at = 5.0 WHERE id = 'w'")
    conn.execute("UPDATE jobs SET status = 'dead' WHERE id = 'd'")
    events_before = conn.execute("SELECT count(*) FROM job_events").fetchone()[0]
    conn.close()

    assert schema.migrate(db) == schema.SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id, status, run_at FROM jobs ORDER BY seq").fetchall() == [
        ("w", "retrying", 5.0), ("d", "dead", None)]
    # Its history is renamed too, and the rename itself adds no event.
    states = [json.loads(data)["status"] for (data,) in conn.execute(
        "SELECT data FROM job_events WHERE job_id = 'w' AND kind = 'state' ORDER BY seq")]
    assert states == ["retrying"]
    assert conn.execute("SELECT count(*) FROM job_events").fetchone()[0] == events_before
    # The trigger still records state changes after the migration.
    conn.execute("UPDATE jobs SET status = 'queued' WHERE id = 'd'")
    conn.commit()
    last = conn.execute("SELECT data FROM job_events WHERE job_id = 'd' "
                        "ORDER BY seq DESC LIMIT 1").fetchone()[0]
    assert json.loads(last)["status"] == "queued"
    conn.close()

    async def body(store: Store) -> None:
        migrated = await store.get("default", "w")
        assert migrated is not None and migrated.status is JobState.RETRYING
        assert migrated.to_json()["final"] is False

    run(db, body, inline=True)


def test_promote_and_the_next_due_time_read_the_due_index(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    assert "INDEX jobs_due (run_at<?)" in _plan(db, PROMOTE, (time.time(),))
    assert "COVERING INDEX jobs_due" in _plan(db, NEXT_DUE, ())
    # Scheduled jobs stay out of the claim's ordering.
    claim = _plan(db, WALK_ORDER, {"n": 1, "skip": "[]", "only": None, "now": 0.0, "held": 0})
    assert "jobs_fair (tenant=?)" in claim and "TEMP B-TREE" not in claim


def test_a_delayed_job_is_scheduled_until_promote_finds_it_due(tmp_path: Path,
                                                               backend: Backend) -> None:
    async def body(store: Store) -> None:
        later = time.time() + 60
        scheduled = await store.submit(dataclasses.replace(job(), run_at=later))
        assert (scheduled.status, scheduled.run_at) == (JobState.SCHEDULED, later)
        assert scheduled.to_json()["final"] is False
        due_now = await store.submit(dataclasses.replace(job(), run_at=time.time() - 1))
        assert (due_now.status, due_now.run_at) == (JobState.QUEUED, None)
        (claim,) = await store.claim("p", 5, 30)  # only the due one
        assert claim.id == due_now.id
        assert await store.promote() == later  # not yet: says when
        stored = await store.get("default", scheduled.id)
        assert stored == scheduled
        listed, _ = await store.list_jobs("default", status="scheduled")
        assert [j.id for j in listed] == [scheduled.id]
        assert (await store.counts())["scheduled"] == 1

        # Its time comes: one promote queues it along with a retrying job that is due.
        other = await store.submit(job(attempts=2))
        (attempt,) = await store.claim("p", 1, 30)
        await store.finish([failed(attempt.id, attempt.token, due_in=30)], max_crashes=3)
        retrying = await store.get("default", other.id)
        assert retrying is not None and retrying.status is JobState.RETRYING
        await backend.query(store, "UPDATE jobs SET run_at = 1 WHERE run_at IS NOT NULL")
        assert await store.promote() is None
        queued = {c.id for c in await store.claim("p", 5, 30)}
        assert queued == {scheduled.id, other.id}

    run(tmp_path / "q.db", body, backend)


def test_a_scheduled_job_is_cancelled_alone_and_at_once(tmp_path: Path,
                                                         backend: Backend) -> None:
    async def body(store: Store) -> None:
        one = await store.submit(dataclasses.replace(job(), run_at=time.time() + 600))
        two = await store.submit(dataclasses.replace(job(), run_at=time.time() + 600))
        cancelled = await store.cancel("default", one.id)
        assert cancelled is not None
        assert (cancelled.status, cancelled.run_at) == (JobState.CANCELLED, None)
        assert cancelled.to_json()["final"] is True
        assert await store.cancel_matching("default", status="scheduled") == (1, 0)
        after = await store.get("default", two.id)
        assert after is not None and after.status is JobState.CANCELLED
        assert await store.promote() is None  # nothing waits any more

    run(tmp_path / "q.db", body, backend)
