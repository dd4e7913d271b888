"""A claim while some queue is held back whole (paused, at its cap, reserved for others): it
passes over the held queue without reading its jobs (schema V20's jobs_queued), and takes
exactly the jobs that the walk of every queued job in claim order takes."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from scholarsource.store import schema, sqlite
from scholarsource.store.base import OPEN, Claim, Gate, NewJob, Store, TaskDefaults
from scholarsource.store.postgres import PostgresStore, sql
from scholarsource.store.postgres import schema as pg_schema
from scholarsource.store.postgres import store as pg_store
from scholarsource.store.sqlite import SqliteStore
from tests.pgcluster import PgCluster, drop_database, fresh_database
from tests.store.backends import Backend
from tests.store.test_sqlite import job, ok, run

# The oracle: the claim's walk before V20, each store's own. It reads the lone tenant's queued
# jobs in claim order and passes over, one by one, each job that may not start.
_SQLITE_WALK = (f"SELECT q.seq, q.id FROM jobs q INDEXED BY jobs_fair "
                f"WHERE q.tenant = {sqlite._FIRST_TENANT} AND {sqlite._CLAIMABLE} "
                f"ORDER BY q.priority DESC, q.seq "
                f"LIMIT CASE WHEN {sqlite._LONE} THEN :n ELSE 0 END")
_PG_WALK = (f"SELECT q.seq, q.id FROM jobs q WHERE {sql._LONE} AND {sql._CLAIMABLE} "
            f"ORDER BY q.priority DESC, q.seq LIMIT %(n)s")

QUEUES = ("a", "b", "c", "d", "e")
KEYS = {"k1": 1, "k2": 2}  # concurrency key: its limit


async def _walk(store: Store, n: int, gate: Gate) -> list[tuple[int, str]]:
    if isinstance(store, SqliteStore):
        rows = await store._db.fetchall(_SQLITE_WALK,
                                        {"n": n, "now": time.time(), **sqlite._gate(gate)})
    else:
        assert isinstance(store, PostgresStore)
        rows = await store._db.fetchall(_PG_WALK,
                                        {"n": n, "now": time.time(), **pg_store._gate(gate)})
    return [(seq, job_id) for seq, job_id in rows]


async def _contested(store: Store) -> bool:
    """Whether several tenants have queued jobs: a claim is then a fair turn, not the walk."""
    statement = sqlite.CONTESTED if isinstance(store, SqliteStore) else sql.CONTESTED
    return bool((await store._db.fetchall(statement, {}))[0][0])  # type: ignore[attr-defined]


def _new(rng: random.Random) -> NewJob:
    new = job(rng.choice(("free", "free", "limited")), priority=rng.choice((0, 0, 1, 2)),
              queue=rng.choice(QUEUES))
    if rng.random() < 0.3:
        key = rng.choice(sorted(KEYS))
        new = dataclasses.replace(new, concurrency_key=key, concurrency_limit=KEYS[key])
    return new


def _gate(rng: random.Random) -> Gate:
    kind = rng.choice(("open", "skip", "only"))
    some = tuple(rng.sample(QUEUES, rng.choice((1, 2))))
    return OPEN if kind == "open" else Gate(skip=some) if kind == "skip" else Gate(only=some)


def test_a_claim_takes_what_the_walk_takes_whatever_is_held(tmp_path: Path,
                                                            backend: Backend) -> None:
    # Seeded steps over a mix: paused queues, gates that skip queues or keep to some, a
    # rate-limited task, concurrency keys, priorities, and now and then a second tenant.
    async def body(store: Store) -> None:
        rng = random.Random(20261205)
        await store.publish_tasks([
            TaskDefaults("limited", "a", None, None, rate_limit=6, rate_window=3600.0),
            TaskDefaults("free", "a", None, None)])
        running: list[Claim] = []
        held_claims = 0  # claims that took jobs while some queue was held whole
        for step in range(120):
            other = step % 20 == 19  # another tenant's job waits a while, in a queue of its own
            await store.submit_many([_new(rng) for _ in range(rng.randint(0, 6))]
                                    + [job("free", tenant="other", queue="x")] * other)
            if rng.random() < 0.25:
                queue = rng.choice(QUEUES)
                await store.pause_queue(queue, queue not in await store.paused_queues())
            gate, n = _gate(rng), rng.randint(1, 4)
            walk, contested = await _walk(store, n, gate), await _contested(store)
            peeked = [seq for seq, _ in await store.peek(n, gate)]
            taken = await store.claim("pool", n, 30, gate=gate)
            if contested:  # the lone tenant's paths yield to a fair turn: one tenant's jobs
                assert walk == [] and len({c.tenant for c in taken}) <= 1, step
            else:
                assert peeked == [seq for seq, _ in walk], step
                assert sorted(c.id for c in taken) == sorted(i for _, i in walk), step
                held_claims += bool(taken) and (gate != OPEN or bool(
                    await store.paused_queues()))
            for _ in range(5 * other):  # the fair turns come to it
                running += await store.claim("pool", 1, 30)
            assert not await _contested(store), step
            running += taken
            done = [c for c in running if rng.random() < 0.5]
            await store.finish([ok(c.id, c.token) for c in done], max_crashes=3)
            running = [c for c in running if c not in done]
        assert held_claims >= 40, held_claims
        for queue in await store.paused_queues():
            await store.pause_queue(queue, False)
        while walk := await _walk(store, 4, OPEN):  # the rest, as the walk takes them
            taken = await store.claim("pool", 4, 30)
            assert sorted(c.id for c in taken) == sorted(i for _, i in walk)
            await store.finish([ok(c.id, c.token) for c in taken + running], max_crashes=3)
            running = []
    run(tmp_path / "q.db", body, backend)


def test_a_held_queue_does_not_end_the_tenants_turns(tmp_path: Path,
                                                      backend: Backend) -> None:
    # Two tenants wait, and one queue is paused: each claim is still one tenant's turn.
    async def body(store: Store) -> None:
        for tenant in ("t1", "t2"):
            await store.submit_many([job("held", tenant=tenant, queue="held")] * 5
                                    + [job("open", tenant=tenant, queue="open")] * 3)
        await store.pause_queue("held", True)
        taken = [c for _ in range(6) for c in await store.claim("pool", 1, 30)]
        assert sorted(c.tenant for c in taken) == ["t1"] * 3 + ["t2"] * 3
        assert {c.task for c in taken} == {"open"}
        assert await store.claim("pool", 1, 30, gate=Gate(skip=("open",))) == []
    run(tmp_path / "q.db", body, backend)


@pytest.mark.parametrize("held", ["paused", "capped"])
def test_a_claims_work_does_not_grow_with_held_back_jobs_ahead(tmp_path: Path,
                                                               held: str) -> None:
    # bench/held_ahead.py's case, counted in SQLite VM steps rather than timed.
    async def work(store: Store, ahead: int) -> int:
        await store.submit_many([job(queue="held")] * ahead)
        await store.submit_many([job(queue="open")] * 3)
        gate = OPEN
        if held == "paused":
            await store.pause_queue("held", True)
        else:
            gate = Gate(skip=("held",))  # at its cap, as the pool's policy says
        assert isinstance(store, SqliteStore)
        conn = store._db.raw._conn  # type: ignore[attr-defined]
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn.set_progress_handler(count, 100)  # every 100 SQLite VM instructions
        (claim,) = await store.claim("pool", 1, 30, gate=gate)
        conn.set_progress_handler(None, 100)
        assert claim.queue == "open"
        return steps

    some = run(tmp_path / "a.db", lambda store: work(store, 1_000), inline=True)
    many = run(tmp_path / "b.db", lambda store: work(store, 20_000), inline=True)
    # The walk passed each of them: ~2,600 such steps with 20,000 ahead, ~135 with 1,000.
    assert many <= some + 5 and many < 100, (some, many)


# Two queues' jobs, written as an older schema holds them: the held one's come first.
_OLD_JOBS = ("INSERT INTO jobs (id, tenant, task, queue, status, params, created_at) "
             "VALUES ('h1', 'default', 'noop', 'held', 'queued', '{}', 0), "
             "('h2', 'default', 'noop', 'held', 'queued', '{}', 0), "
             "('o1', 'default', 'noop', 'open', 'queued', '{}', 0)")


async def _claim_past_the_held_queue(store: Store) -> list[str]:
    await store.pause_queue("held", True)
    first = [c.id for c in await store.claim("pool", 5, 30)]
    await store.pause_queue("held", False)
    return first + [c.id for c in await store.claim("pool", 5, 30)]


def test_a_v19_database_indexes_the_jobs_it_holds_when_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, migration in enumerate(schema.MIGRATIONS[:19]):
        conn.executescript(f"BEGIN;\n{migration}\nPRAGMA user_version = {number + 1};\nCOMMIT;")
    conn.execute(_OLD_JOBS)
    conn.close()
    assert schema.migrate(db) == schema.SCHEMA_VERSION == 20
    # The paused queue's jobs are passed over through jobs_queued, which holds the old rows.
    assert run(db, _claim_past_the_held_queue) == ["o1", "h1", "h2"]


def test_a_v7_postgres_database_indexes_the_jobs_it_holds_when_upgraded(
        pg_cluster: PgCluster) -> None:
    url = fresh_database(pg_cluster, template="template0")
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, "
                         "applied_at double precision NOT NULL)")
            for number, migration in enumerate(pg_schema.MIGRATIONS[:7]):
                conn.execute(migration)
                conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (number + 1,))
            conn.execute(_OLD_JOBS)
        assert pg_schema.migrate(url) == pg_schema.SCHEMA_VERSION == 8

        async def claimed() -> list[str]:
            store = await PostgresStore.open(url, role="pool")
            try:
                return await _claim_past_the_held_queue(store)
            finally:
                await store.close()

        assert asyncio.run(claimed()) == ["o1", "h1", "h2"]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_indexes "
                                "WHERE indexname = 'jobs_queued'").fetchone() == (1,)
    finally:
        drop_database(pg_cluster, url)
