"""The SQLite store against a real database file in tmp_path."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from scholarsource.errors import StoreError, StoreUnavailable
from scholarsource.store import schema
from scholarsource.store.base import NewJob, Note, Outcome
from scholarsource.store.sqlite import CLAIM_ORDER, SqliteStore

T = TypeVar("T")


@pytest.fixture(params=[False, True], ids=["aiosqlite", "inline"])
def inline(request: pytest.FixtureRequest) -> bool:
    """Every store test runs on both drivers: the API's (aiosqlite) and the pool's."""
    return bool(request.param)


def run(path: Path, body: Callable[[SqliteStore], Awaitable[T]], inline: bool) -> T:
    async def main() -> T:
        schema.migrate(path)
        store = await SqliteStore.open(path, inline=inline)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def job(task: str = "noop", priority: int = 0, attempts: int = 1, tenant: str = "default",
        queue: str = "default") -> NewJob:
    return NewJob(task=task, params={"p": 1}, queue=queue, priority=priority,
                  max_attempts=attempts, tenant=tenant)


def test_the_claim_walks_an_index_and_never_sorts(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {CLAIM_ORDER}", (1,)))
    conn.close()
    assert "jobs_claim" in plan
    assert "TEMP B-TREE" not in plan


def test_claim_takes_priority_then_age_and_leases(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
        low = await store.submit(job(priority=-1))
        first = await store.submit(job())
        second = await store.submit(job())
        high = await store.submit(job(priority=5))
        order = [c.id for _ in range(4) for c in await store.claim("pool-a", 1, 30)]
        assert order == [high.id, first.id, second.id, low.id]
        assert await store.claim("pool-a", 1, 30) == []
        running = await store.get("default", first.id)
        assert running is not None and running.status == "running" and running.attempts == 1

    run(tmp_path / "q.db", body, inline)


def test_a_stale_token_cannot_overwrite_a_newer_attempt(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
        submitted = await store.submit(job(attempts=3))
        (stale,) = await store.claim("pool-a", 1, 30)
        assert await store.recover("pool-b", all_others=True) == 1  # pool-a presumed dead
        (fresh,) = await store.claim("pool-b", 1, 30)
        assert fresh.token != stale.token
        await store.note([Note(submitted.id, stale.token, "progress", {"fraction": 0.9})])
        await store.finish([Outcome(submitted.id, stale.token, ok=True, result_json='"stale"')])
        current = await store.get("default", submitted.id)
        assert current is not None
        assert (current.status, current.result, current.progress) == ("running", None, None)
        await store.finish([Outcome(submitted.id, fresh.token, ok=True, result_json='"fresh"')])
        done = await store.get("default", submitted.id)
        assert done is not None and (done.status, done.result) == ("succeeded", "fresh")
        assert done.attempts == 1  # the interrupted attempt was refunded

    run(tmp_path / "q.db", body, inline)


def test_failures_requeue_until_the_last_attempt(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
        submitted = await store.submit(job(attempts=2))
        for expected in ("queued", "failed"):
            (claim,) = await store.claim("p", 1, 30)
            await store.finish([Outcome(claim.id, claim.token, ok=False, error="boom",
                                        error_detail="Traceback ...")])
            current = await store.get("default", submitted.id)
            assert current is not None and current.status == expected
        assert current.error == "boom" and current.attempts == 2
        assert "error_detail" not in current.to_json()

    run(tmp_path / "q.db", body, inline)


def test_cancel_and_tenant_scoping(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
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

    run(tmp_path / "q.db", body, inline)


def test_list_pages_with_a_cursor_and_filters(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
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

    run(tmp_path / "q.db", body, inline)


def test_every_state_change_leaves_an_event(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
        submitted = await store.submit(job())
        (claim,) = await store.claim("p", 1, 30)
        await store.note([Note(claim.id, claim.token, "progress", {"fraction": 0.5,
                                                                   "message": "half"}),
                          Note(claim.id, claim.token, "log", {"message": "hello"})])
        await store.finish([Outcome(claim.id, claim.token, ok=True, result_json="[1]")])
        events = await store.events("default", submitted.id)
        assert [(e.kind, e.data.get("status") or e.data.get("message")) for e in events] == [
            ("state", "running"), ("progress", "half"), ("log", "hello"),
            ("state", "succeeded")]
        assert await store.events("other", submitted.id) == []
        later = await store.events("default", submitted.id, after=events[1].seq)
        assert [e.seq for e in later] == [e.seq for e in events[2:]]

    run(tmp_path / "q.db", body, inline)


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


def test_one_call_records_a_batch_and_skips_stale_entries(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> None:
        ids = [(await store.submit(job(attempts=1))).id for _ in range(50)]
        claims = await store.claim("p", 50, 30)
        assert sorted(c.id for c in claims) == sorted(ids)
        outcomes = [Outcome(c.id, c.token, ok=True, result_json=json.dumps({"n": i}))
                    for i, c in enumerate(claims[:40])]
        outcomes += [Outcome(c.id, c.token + 1, ok=True, result_json='"stale"')
                     for c in claims[40:]]
        await store.note([Note(c.id, c.token, "progress", {"fraction": f / 10})
                          for c in claims[:2] for f in range(1, 4)])
        await store.finish(outcomes)
        counts = await store.counts()
        assert (counts["succeeded"], counts["running"]) == (40, 10)
        first = await store.get("default", claims[0].id)
        assert first is not None and first.result == {"n": 0}
        await store.requeue([(c.id, c.token) for c in claims[40:]], "shutting down")
        requeued = await store.get("default", claims[45].id)
        assert requeued is not None
        assert (requeued.status, requeued.attempts, requeued.error) == (
            "queued", 0, "shutting down")

    run(tmp_path / "q.db", body, inline)


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
