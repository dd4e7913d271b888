"""The SQLite store against a real database file in tmp_path."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from scholarsource.api.schemas import parse_list_query
from scholarsource.errors import StoreError, StoreUnavailable
from scholarsource.quotas import Ask, QuotaPolicy
from scholarsource.store import schema
from scholarsource.store.base import Ending, NewJob, Note, Outcome, Reused, Store
from scholarsource.store.rows import new_job_id
from scholarsource.store.sqlite import (
    FINISH_ROWS,
    HEADS_ORDER,
    LIST_FILTERS,
    QUEUE_DEPTHS,
    TENANT_QUEUE_DEPTHS,
    TENANT_QUEUE_FINISHES,
    TENANT_RATES,
    WALK_ORDER,
    SqliteStore,
    list_sql,
)
from tests.store.backends import Backend, sqlite_backend

T = TypeVar("T")


def query_plan(conn: sqlite3.Connection, sql: str,
               args: Sequence[object] | Mapping[str, object] | None = None) -> str:
    """EXPLAIN QUERY PLAN of `sql`, its steps joined with " | "; without `args`, every ?
    is bound to 1."""
    bound = [1] * sql.count("?") if args is None else args
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bound))


def run(path: Path, body: Callable[[Store], Awaitable[T]], backend: Backend | bool = False,
        *, inline: bool = False) -> T:
    """Open a store on `backend` (for SQLite, the file at `path`), run `body`, close it. A
    bool instead of a backend (or `inline`) picks SQLite's driver, for tests of SQLite alone."""
    chosen = backend if isinstance(backend, Backend) else sqlite_backend(backend or inline)

    async def main() -> T:
        store = await chosen.open(path)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def job(task: str = "noop", priority: int = 0, attempts: int = 1, tenant: str = "default",
        queue: str = "default") -> NewJob:
    return NewJob(task=task, params={"p": 1}, queue=queue, priority=priority,
                  max_attempts=attempts, tenant=tenant)


def ok(claim_id: str, token: int, result: str = "null") -> Outcome:
    return Outcome(claim_id, token, Ending.SUCCEEDED, result_json=result)


def failed(claim_id: str, token: int, *, crashed: bool = False, due_in: float = -1.0,
           error: str = "boom") -> Outcome:
    return Outcome(claim_id, token, Ending.CRASHED if crashed else Ending.FAILED,
                   error_code="worker_died" if crashed else "task_error", error=error,
                   error_detail="Traceback ...", retry_at=time.time() + due_in)


def test_one_tenants_queue_figures_walk_its_live_jobs_only(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    args = {"tenant": "a", "since": 0.0, "now": 0.0}
    depths = query_plan(conn, TENANT_QUEUE_DEPTHS, args)
    finishes = query_plan(conn, TENANT_QUEUE_FINISHES, args)
    rates = query_plan(conn, TENANT_RATES, args)
    conn.close()
    # (tenant, status) for live jobs, (tenant, finished_at) for recent finishes: never the
    # tenant's whole history, which jobs_tenant_queue or jobs_tenant_task would walk.
    assert depths.count("jobs_tenant_status (tenant=? AND status=?)") == 3, depths
    assert "jobs_finished (tenant=? AND finished_at>?)" in finishes, finishes
    assert "jobs_tenant_status (tenant=? AND status=?)" in rates, rates


def test_the_whole_servers_queue_depths_read_live_jobs_only(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    depths = query_plan(conn, QUEUE_DEPTHS)
    conn.close()
    # Each state through its own partial index: never a scan of every job ever kept.
    assert all("USING" in step for step in depths.split(" | ") if "jobs" in step), depths
    assert "jobs_due" in depths, depths


def test_the_claim_walks_an_index_or_the_open_queues_heads(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    args = {"n": 1, "skip": "[]", "only": None, "now": 0.0, "held": 0}
    walk = query_plan(conn, WALK_ORDER, args)
    heads = query_plan(conn, HEADS_ORDER, args).split(" | ")
    conn.close()
    # Nothing held: a walk of jobs_fair in claim order, never sorted.
    assert "jobs_fair (tenant=?)" in walk and "TEMP B-TREE" not in walk, walk
    # A queue held: each queue's range of jobs_queued; the one sort merges the open queues'
    # first jobs (at most :n a queue).
    assert "SEARCH q USING INDEX jobs_queued (queue=?)" in heads, heads
    assert not any(step.startswith("SCAN") and ("jobs" in step or step == "SCAN c")
                   for step in heads), heads
    assert [step for step in heads if "TEMP B-TREE" in step] == ["USE TEMP B-TREE FOR ORDER BY"]


# The index each combination of GET /api/jobs filters reads, with a live status / a final one.
LIST_INDEXES = {
    (): ("jobs_tenant", "jobs_tenant"),
    ("status",): ("jobs_tenant_status", "jobs_tenant_status"),
    ("task",): ("jobs_tenant_task", "jobs_tenant_task"),
    ("queue",): ("jobs_tenant_queue", "jobs_tenant_queue"),
    ("status", "task"): ("jobs_tenant_status", "jobs_tenant_task"),
    ("status", "queue"): ("jobs_tenant_status", "jobs_tenant_queue"),
    ("task", "queue"): ("jobs_tenant_task", "jobs_tenant_task"),
    ("status", "task", "queue"): ("jobs_tenant_status", "jobs_tenant_task"),
}
# A schedule's jobs are one task's, fewer still: its index leads unless a live status does.
LIST_INDEXES.update({
    (*combo, "schedule"): ("jobs_tenant_status" if "status" in combo else
                           "jobs_tenant_schedule", "jobs_tenant_schedule")
    for combo in list(LIST_INDEXES)})


def test_every_list_filter_combination_walks_an_index_and_never_sorts(tmp_path: Path) -> None:
    offered = parse_list_query({"status": "queued", "task": "t", "queue": "q",
                                "schedule": "s"})
    # `search` is no equality filter: it narrows the window that these same statements read
    # (SEARCH wraps list_sql), so it walks the same indexes.
    paging_and_search = ("limit", "cursor", "search")
    assert {k for k in offered if k not in paging_and_search} == set(LIST_FILTERS)
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    combos = [c for n in range(len(LIST_FILTERS) + 1)
              for c in itertools.combinations(LIST_FILTERS, n)]
    assert sorted(combos) == sorted(LIST_INDEXES)
    for combo, paged, finished in itertools.product(combos, (False, True), (False, True)):
        sql = list_sql(set(combo), paged=paged, finished=finished)
        plan = query_plan(conn, sql)
        index = LIST_INDEXES[combo][finished]
        assert plan.startswith(f"SEARCH jobs USING INDEX {index} ("), (combo, finished, plan)
        assert "TEMP B-TREE" not in plan and "|" not in plan, (combo, plan)
        assert ("seq<?" in plan) == paged, (combo, plan)
    conn.close()


def test_claim_takes_priority_then_age_and_leases(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        low = await store.submit(job(priority=-1))
        first = await store.submit(job())
        second = await store.submit(job())
        high = await store.submit(job(priority=5))
        order = [c.id for _ in range(4) for c in await store.claim("pool-a", 1, 30)]
        assert order == [high.id, first.id, second.id, low.id]
        assert await store.claim("pool-a", 1, 30) == []
        running = await store.get("default", first.id)
        assert running is not None and running.status == "running" and running.attempts == 1

    run(tmp_path / "q.db", body, backend)


def test_a_stale_token_cannot_overwrite_a_newer_attempt(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        submitted = await store.submit(job(attempts=3))
        (stale,) = await store.claim("pool-a", 1, 30)
        # pool-a presumed dead: its job runs again, and that counts as a crash
        assert await store.recover("pool-b", box="", max_crashes=3) == 1
        (fresh,) = await store.claim("pool-b", 1, 30)
        assert fresh.token != stale.token
        await store.note([Note(submitted.id, stale.token, "progress", {"fraction": 0.9})])
        # A stale attempt changes nothing, and finish says so (nothing is logged or counted).
        assert await store.finish([ok(submitted.id, stale.token, '"stale"')], max_crashes=3) \
            == {}
        assert await store.finish([failed(submitted.id, stale.token)], max_crashes=3) == {}
        current = await store.get("default", submitted.id)
        assert current is not None
        assert (current.status, current.result, current.progress) == ("running", None, None)
        assert await store.finish([ok(submitted.id, fresh.token, '"fresh"')],
                                  max_crashes=3) == {submitted.id: "succeeded"}
        done = await store.get("default", submitted.id)
        assert done is not None and (done.status, done.result) == ("succeeded", "fresh")
        assert (done.attempts, done.failures, done.crashes) == (2, 0, 1)
        assert [(h["attempt"], h["outcome"], h["error_code"])
                for h in done.attempts_history] == [
            (1, "interrupted", "pool_died"), (2, "succeeded", None)]

    run(tmp_path / "q.db", body, backend)


def test_a_failure_waits_for_its_backoff_then_dies_after_the_last_attempt(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        submitted = await store.submit(job(attempts=2))
        (claim,) = await store.claim("p", 1, 30)
        await store.finish([failed(claim.id, claim.token, due_in=60)], max_crashes=3)
        waiting = await store.get("default", submitted.id)
        assert waiting is not None and waiting.status == "retrying"
        assert waiting.run_at is not None and waiting.run_at > time.time() + 50
        assert waiting.finished_at is None and not waiting.status.final
        assert waiting.to_json()["final"] is False
        assert await store.claim("p", 1, 30) == []  # not before its run_at
        assert await store.promote() == waiting.run_at  # nothing due yet: says when
        await backend.query(store, "UPDATE jobs SET run_at = 0")  # time passes
        assert await store.promote() is None
        (claim,) = await store.claim("p", 1, 30)
        assert claim.failures == 1 and claim.attempt == 2
        await store.finish([failed(claim.id, claim.token)], max_crashes=3)
        dead = await store.get("default", submitted.id)
        assert dead is not None
        assert (dead.status, dead.error, dead.error_code, dead.attempts, dead.failures) == (
            "dead", "boom", "task_error", 2, 2)
        assert dead.finished_at is not None and dead.run_at is None
        assert [h["outcome"] for h in dead.attempts_history] == ["failed", "failed"]
        assert "error_detail" not in dead.to_json()

    run(tmp_path / "q.db", body, backend)


def test_crashes_are_counted_apart_and_cap_a_poison_job(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        submitted = await store.submit(job(attempts=10))
        for _ in range(2):
            await store.promote()
            (claim,) = await store.claim("p", 1, 30)
            await store.finish([failed(claim.id, claim.token, crashed=True)], max_crashes=2)
        dead = await store.get("default", submitted.id)
        assert dead is not None
        assert (dead.status, dead.error_code, dead.failures, dead.crashes) == (
            "dead", "worker_died", 2, 2)

    run(tmp_path / "q.db", body, backend)


def test_retry_and_purge_the_dead_letters(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        first, second, alive = [await store.submit(job(tenant="a")) for _ in range(3)]
        for claim in await store.claim("p", 2, 30):
            await store.finish([failed(claim.id, claim.token)], max_crashes=3)
        assert (await store.counts())["dead"] == 2
        job_after, retried = await store.retry("a", alive.id)
        assert job_after is not None and not retried  # queued: nothing to retry
        assert await store.retry("b", first.id) == (None, False)  # another tenant's
        again, retried = await store.retry("a", first.id)
        assert retried and again is not None
        assert (again.status, again.failures, again.error, again.attempts) == (
            "queued", 0, None, 1)
        assert await store.retry_dead("b") == 0 and await store.purge_dead("b") == 0
        assert await store.purge_dead("a") == 1
        assert await store.get("a", second.id) is None
        assert await store.events("a", second.id) == []
        (claim,) = await store.claim("p", 1, 30)
        await store.finish([failed(claim.id, claim.token)], max_crashes=3)
        assert await store.retry_dead("a") == 1

    run(tmp_path / "q.db", body, backend)


def test_admission_claims_the_jobs_it_peeked(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        small = await store.submit(job(task="small", priority=2))
        big = await store.submit(job(task="big", priority=1))
        await store.submit(job(task="later"))
        peeked = await store.peek(2)
        assert [task for _, task in peeked] == ["small", "big"]
        await store.cancel("default", big.id)  # meanwhile: only queued jobs are claimed
        claims = await store.claim("p", 5, 30, refs=[ref for ref, _ in peeked])
        assert [c.id for c in claims] == [small.id]

    run(tmp_path / "q.db", body, backend)


def test_a_v1_database_is_upgraded_and_its_failed_jobs_become_dead(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO jobs (id, tenant, task, queue, status, params, created_at) "
                 "VALUES ('x', 'default', 'noop', 'default', 'failed', '{}', 0)")
    conn.close()
    assert schema.migrate(db) == schema.SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status, history FROM jobs").fetchone() == ("dead", "[]")
    conn.close()


def test_cancel_and_tenant_scoping(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        mine = await store.submit(job(tenant="a"))
        assert await store.get("b", mine.id) is None
        assert await store.cancel("b", mine.id) is None
        assert (await store.list_jobs("b"))[0] == []
        cancelled = await store.cancel("a", mine.id)
        assert cancelled is not None and cancelled.status == "cancelled"
        running = await store.submit(job(tenant="a"))
        (claim,) = await store.claim("p", 1, 30)
        flagged = await store.cancel("a", running.id)
        assert flagged is not None and flagged.status == "running" and flagged.cancel_requested
        assert await store.cancel_requested("p") == [(running.id, claim.token)]
        assert await store.cancel_requested("other-pool") == []

    run(tmp_path / "q.db", body, backend)


def test_cancel_matching_cancels_live_jobs_of_one_tenant_in_one_statement(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        done = await store.submit(job(task="slow", attempts=3))
        retrying = await store.submit(job(task="slow", attempts=3))
        (first, second) = await store.claim("p", 2, 30)
        await store.finish([ok(first.id, first.token)], max_crashes=3)
        await store.finish([failed(second.id, second.token, due_in=60)], max_crashes=3)
        running = await store.submit(job(task="slow"))
        (claim,) = await store.claim("p", 1, 30)
        bulk = [await store.submit(job(queue="bulk")) for _ in range(3)]
        other = await store.submit(job(task="echo"))
        theirs = await store.submit(job(tenant="b", queue="bulk"))

        assert await store.cancel_matching("a", queue="bulk") == (0, 0)  # no jobs of tenant a
        assert await store.cancel_matching("default", queue="bulk") == (3, 0)
        assert await store.cancel_matching("default", task="slow", status="queued") == (0, 0)
        assert await store.cancel_matching("default", task="slow") == (1, 1)
        after = {j.id: j for j in (await store.list_jobs("default", limit=100))[0]}
        assert [after[j.id].status for j in bulk] == ["cancelled"] * 3
        assert after[other.id].status == "queued"
        assert after[done.id].status == "succeeded" and not after[done.id].cancel_requested
        cancelled = after[retrying.id]
        assert (cancelled.status, cancelled.run_at, cancelled.error_code) == (
            "cancelled", None, "cancelled")
        assert cancelled.finished_at is not None and len(cancelled.attempts_history) == 1
        assert (after[running.id].status, after[running.id].cancel_requested) == ("running", True)
        assert await store.cancel_requested("p") == [(running.id, claim.token)]
        assert (await store.get("b", theirs.id)).status == "queued"  # type: ignore[union-attr]
        events = await store.events("default", bulk[0].id)
        assert [e.data["status"] for e in events if e.kind == "state"] == ["cancelled"]
        assert await store.cancel_matching("default") == (1, 1)  # all: `other`, and flags again

    run(tmp_path / "q.db", body, backend)


def test_list_pages_with_a_cursor_and_filters(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = [(await store.submit(job(task="echo" if i % 2 else "noop"))).id for i in range(7)]
        seen, cursor = [], None
        while True:
            page, cursor = await store.list_jobs("default", limit=3, cursor=cursor)
            seen += [j.id for j in page]
            if cursor is None:
                break
        assert seen == ids[::-1]
        echoes, _ = await store.list_jobs("default", task="echo")
        assert [j.id for j in echoes] == ids[1::2][::-1]
        queued, _ = await store.list_jobs("default", status="queued", queue="default", limit=100)
        assert len(queued) == 7
        assert (await store.list_jobs("default", task="echo", queue="other"))[0] == []
        both, _ = await store.list_jobs("default", status="queued", task="echo", queue="default")
        assert [j.id for j in both] == ids[1::2][::-1]
        assert (await store.list_jobs("default", status="succeeded", task="echo"))[0] == []

    run(tmp_path / "q.db", body, backend)


def test_every_state_change_leaves_an_event(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        submitted = await store.submit(job())
        (claim,) = await store.claim("p", 1, 30)
        await store.note([Note(claim.id, claim.token, "progress", {"fraction": 0.5,
                                                                   "message": "half"}),
                          Note(claim.id, claim.token, "log", {"message": "hello"})])
        await store.finish([ok(claim.id, claim.token, "[1]")], max_crashes=3)
        events = await store.events("default", submitted.id)
        assert [(e.kind, e.data.get("status") or e.data.get("message")) for e in events] == [
            ("state", "running"), ("progress", "half"), ("log", "hello"),
            ("state", "succeeded")]
        assert await store.events("other", submitted.id) == []
        later = await store.events("default", submitted.id, after=events[1].seq)
        assert [e.seq for e in later] == [e.seq for e in events[2:]]

    run(tmp_path / "q.db", body, backend)


def test_migrate_is_idempotent_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    assert schema.migrate(db) == schema.SCHEMA_VERSION
    assert schema.migrate(db) == schema.SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        schema.migrate(db)


def test_one_call_records_a_batch_and_skips_stale_entries(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = [(await store.submit(job(attempts=1))).id for _ in range(50)]
        claims = await store.claim("p", 50, 30)
        assert sorted(c.id for c in claims) == sorted(ids)
        outcomes = [ok(c.id, c.token, json.dumps({"n": i})) for i, c in enumerate(claims[:40])]
        outcomes += [ok(c.id, c.token + 1, '"stale"') for c in claims[40:]]
        await store.note([Note(c.id, c.token, "progress", {"fraction": f / 10})
                          for c in claims[:2] for f in range(1, 4)])
        await store.finish(outcomes, max_crashes=3)
        counts = await store.counts()
        assert (counts["succeeded"], counts["running"]) == (40, 10)
        first = await store.get("default", claims[0].id)
        assert first is not None and first.result == {"n": 0}
        await store.requeue([(c.id, c.token) for c in claims[40:]], "shutting down")
        requeued = await store.get("default", claims[45].id)
        assert requeued is not None
        # The body may have run, so the attempt still counts; it is just not charged.
        assert (requeued.status, requeued.attempts, requeued.failures, requeued.error) == (
            "queued", 1, 0, "shutting down")
        assert requeued.attempts_history[0]["outcome"] == "interrupted"

    run(tmp_path / "q.db", body, backend)


def test_a_batch_larger_than_one_statement_is_recorded_whole(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        count = FINISH_ROWS + 3  # SQLite writes it as two statements, in one transaction
        await store.submit_many([job(attempts=2) for _ in range(count)])
        claims = await store.claim("p", count, 30)
        assert len(claims) == count
        outcomes = [ok(c.id, c.token, json.dumps(i)) if i % 2 else
                    Outcome(c.id, c.token, Ending.FAILED, error=f"no {i}", retry_at=0.0)
                    for i, c in enumerate(claims)]
        states = await store.finish(outcomes, max_crashes=3)
        assert states == {c.id: "succeeded" if i % 2 else "retrying"
                          for i, c in enumerate(claims)}
        # Both kinds past the first statement's rows are written with their own values.
        done = await store.get("default", claims[FINISH_ROWS + 1].id)
        retried = await store.get("default", claims[FINISH_ROWS + 2].id)
        assert done is not None and (done.status, done.result) == ("succeeded", FINISH_ROWS + 1)
        assert retried is not None and (retried.status, retried.error) == (
            "retrying", f"no {FINISH_ROWS + 2}")

    run(tmp_path / "q.db", body, backend)


def test_none_and_flags_are_stored_as_null_and_integers(tmp_path: Path, inline: bool) -> None:
    """store/sqlite.py registers sqlite3 adapters for None and bool (to skip a raised and
    cleared AttributeError per bound value); a row must read back as before: NULLs, 0, 1."""
    async def body(store: Store) -> None:
        await store.admit([(Ask("default"), [job()])], QuotaPolicy())  # the API's group insert
        await store.submit(dataclasses.replace(job(), bypass_cache=True, concurrency_key="u",
                                               concurrency_limit=2))

    schema.migrate(tmp_path / "q.db")
    run(tmp_path / "q.db", body, inline=inline)
    rows = sqlite3.connect(tmp_path / "q.db").execute(
        "SELECT typeof(timeout), typeof(idempotency_key), bypass_cache, typeof(bypass_cache), "
        "unique_job, typeof(unique_job), concurrency_key FROM jobs ORDER BY seq").fetchall()
    assert rows == [("null", "null", 0, "integer", 0, "integer", None),
                    ("null", "null", 1, "integer", 0, "integer", "u")]


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
def test_durability_sets_synchronous(tmp_path: Path, inline: bool, durability: str,
                                     level: int) -> None:
    async def main() -> int:
        schema.migrate(tmp_path / "q.db")
        store = await SqliteStore.open(tmp_path / "q.db", durability=durability, inline=inline)
        try:
            (row,) = await store._db.fetchall("PRAGMA synchronous")
            return int(row[0])
        finally:
            await store.close()

    assert asyncio.run(main()) == level


def test_check_writable_needs_the_write_lock_and_leaves_no_transaction(
        tmp_path: Path, inline: bool) -> None:
    async def main() -> None:
        schema.migrate(tmp_path / "q.db")
        store = await SqliteStore.open(tmp_path / "q.db", busy_timeout=0.1, inline=inline)
        holder = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
        try:
            await store.check_writable()
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable):
                await store.check_writable()
            holder.execute("ROLLBACK")
            await store.check_writable()
            holder.execute("BEGIN IMMEDIATE")  # the store left no transaction open
            holder.execute("ROLLBACK")
        finally:
            holder.close()
            await store.close()

    asyncio.run(main())


def test_job_ids_never_start_with_a_dash() -> None:
    ids = [new_job_id() for _ in range(5000)]
    assert not any(job_id.startswith("-") for job_id in ids)
    assert len(set(ids)) == 5000 and all(len(job_id) == 30 for job_id in ids)


def test_a_key_names_one_job_per_tenant(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        keyed = NewJob(task="noop", params={"p": 1}, queue="default", priority=0,
                       max_attempts=1, idempotency_key="order-42")
        first, reused = await store.submit_once(keyed)
        assert reused is None and first.idempotency_key == "order-42"
        again, reused = await store.submit_once(keyed)
        assert reused is Reused.IDEMPOTENT and again.id == first.id
        other, reused = await store.submit_once(NewJob(
            task="noop", params={}, queue="default", priority=0, max_attempts=1,
            tenant="b", idempotency_key="order-42"))
        assert reused is None and other.id != first.id  # keys are per tenant
        await store.submit_many([job(), job()])  # no key: never a conflict
        assert (await store.counts())["queued"] == 4

    run(tmp_path / "q.db", body, backend)
