"""What only the PostgreSQL store has to show: the claim's plan, SKIP LOCKED and the claim
turn across boxes (two stores on one database), migrations two boxes run at once, the
unavailable server, LISTEN/NOTIFY, no prepared statements (PgBouncer), and maintenance."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar

import psycopg
import pytest

from scholarsource.errors import StoreError, StoreUnavailable
from scholarsource.store.base import LIVE_STATES, JobState, Note, TaskDefaults, Wake
from scholarsource.store.postgres import PostgresStore, schema, sql
from scholarsource.store.postgres import store as pg_store
from scholarsource.store.url import DatabaseUrl
from tests.pgcluster import Bouncer, PgCluster, drop_database, fresh_database
from tests.store.test_sqlite import job, ok

T = TypeVar("T")


def on_two(url: str, body: Callable[[PostgresStore, PostgresStore], Awaitable[T]]) -> T:
    """Run `body` with two stores on one database: two boxes, as far as the schema knows."""

    async def main() -> T:
        a = await PostgresStore.open(url, role="pool")
        b = await PostgresStore.open(url, role="pool")
        try:
            return await body(a, b)
        finally:
            await a.close()
            await b.close()

    return asyncio.run(main())


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def _read_by(node: dict[str, Any]) -> Iterator[str]:
    """The relations whose rows flow into `node` (its sub-plans of their own left out)."""
    if "Relation Name" in node:
        yield node["Relation Name"]
    for child in node.get("Plans", []):
        if child["Parent Relationship"] not in ("InitPlan", "SubPlan"):
            yield from _read_by(child)


# Two shapes of a queue of 20k (statistics taken), so the planner has a real choice to
# make: three tenants at three priorities, some jobs done; two tenants, all queued, one
# priority (a turn then looked like many rows, and the claim hashed every job).
_MIXED = ("SELECT 'j' || i, 't' || (i % 3), 'noop', 'default', i % 3, "
          "CASE WHEN i % 4 = 0 THEN 'succeeded' ELSE 'queued' END, '{}', i "
          "FROM generate_series(1, 20000) AS i")
_FLAT = ("SELECT 'j' || i, 't' || (i % 2), 'noop', 'default', 0, 'queued', '{}', i "
         "FROM generate_series(1, 20000) AS i")


@pytest.mark.parametrize(("statement", "walks"), [(sql.CLAIM, "jobs_claim"),
                                                   (sql.FAIR_CLAIM, "jobs_fair")],
                         ids=["lone tenant", "turn"])
@pytest.mark.parametrize(("queue", "n"), [(_MIXED, 10), (_FLAT, 1)], ids=["mixed", "flat"])
def test_the_claim_walks_indexes_and_never_sorts_jobs(pg_url: str, statement: str,
                                                      walks: str, queue: str, n: int) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs (id, tenant, task, queue, priority, status, params, "
                     "created_at) " + queue)
        conn.execute("ANALYZE jobs")
        (row,) = conn.execute(
            "EXPLAIN (FORMAT JSON) " + statement,
            {"n": n, "skip": [], "only": None, "now": 0.0, "weights": "{}", "owner": "o",
             "lease_until": 1.0}).fetchall()
    nodes = list(plan_nodes(row[0][0]["Plan"]))
    scans = [(node["Node Type"], node.get("Index Name")) for node in nodes
             if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"]
    # Every read of jobs is an index walk or probe: the lone tenant's plain walk of
    # jobs_claim, the turn's of jobs_fair (tenants, heads, its jobs), keys and rows by seq.
    assert {kind for kind, _ in scans} <= {"Index Scan", "Index Only Scan"}, scans
    assert walks in {index for _, index in scans}, scans
    # What is sorted is a handful of rows of the statement's own: one head per tenant (the
    # turn), the claimed jobs (their order out, the passes they move on). Never jobs.
    sorted_rows = [set(_read_by(node)) for node in nodes if "Sort" in node["Node Type"]]
    assert sorted_rows and not any("jobs" in read for read in sorted_rows), sorted_rows


def test_a_claim_with_a_queue_held_reads_each_queues_first_jobs_by_index(pg_url: str) -> None:
    # 20k jobs over ten queues, one tenant: the heads path (a queue paused or gated).
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs (id, tenant, task, queue, priority, status, params, "
                     "created_at) SELECT 'j' || i, 't', 'noop', 'q' || (i % 10), i % 3, "
                     "'queued', '{}', i FROM generate_series(1, 20000) AS i")
        conn.execute("ANALYZE jobs")
        (row,) = conn.execute(
            "EXPLAIN (FORMAT JSON) " + sql.CLAIM_HEADS,
            {"n": 4, "skip": ["q0", "q1"], "only": None, "now": 0.0, "owner": "o",
             "lease_until": 1.0}).fetchall()
    nodes = list(plan_nodes(row[0][0]["Plan"]))
    scans = [(node["Node Type"], node.get("Index Name")) for node in nodes
             if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"]
    assert {kind for kind, _ in scans} <= {"Index Scan", "Index Only Scan"}, scans
    assert "jobs_queued" in {index for _, index in scans}, scans


def test_the_whole_servers_queue_depths_never_scan_finished_jobs(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs (id, tenant, task, queue, priority, status, params, "
                     "created_at, run_at) SELECT 'j' || i, 't', 'noop', 'default', 0, "
                     "CASE WHEN i % 1000 = 0 THEN 'scheduled' ELSE 'succeeded' END, '{}', i, "
                     "CASE WHEN i % 1000 = 0 THEN 1e10 END FROM generate_series(1, 20000) i")
        conn.execute("ANALYZE jobs")
        (row,) = conn.execute("EXPLAIN (FORMAT JSON) " + sql.QUEUE_DEPTHS).fetchall()
        depths = conn.execute(sql.QUEUE_DEPTHS).fetchall()
    scans = [(node["Node Type"], node.get("Index Name")) for node in plan_nodes(row[0][0]["Plan"])
             if node.get("Relation Name") == "jobs"]
    # The scheduled ones through jobs_due: without run_at in the query, PostgreSQL walked
    # the whole of jobs_tenant_status, every job ever kept.
    assert "Seq Scan" not in {kind for kind, _ in scans}, scans
    assert "jobs_due" in {index for _, index in scans}, scans
    assert ("default", "scheduled", 20, 1000.0) in [tuple(r) for r in depths]


def test_two_boxes_never_claim_the_same_job(pg_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> None:
        submitted = {j.id for j in await a.submit_many([job() for _ in range(300)])}

        async def drain(store: PostgresStore, owner: str) -> list[str]:
            taken: list[str] = []
            while claims := await store.claim(owner, 7, 30):
                taken += [c.id for c in claims]
            return taken

        first, second = await asyncio.gather(drain(a, "box-a"), drain(b, "box-b"))
        assert len(first) + len(second) == 300 == len(set(first) | set(second))
        assert set(first) | set(second) == submitted

    on_two(pg_url, body)


def test_boxes_starting_at_once_each_publish_the_registry(pg_url: str) -> None:
    # Each pool replaces the task registry at boot; two at once once failed a pool's boot
    # with a duplicate key (one's DELETE missed the other's uncommitted INSERT).
    tasks = [TaskDefaults(f"task{i}", "default", None, None) for i in range(20)]

    async def body(a: PostgresStore, b: PostgresStore) -> set[str]:
        for _ in range(20):
            await asyncio.gather(a.publish_tasks(tasks), b.publish_tasks(tasks))
        return set(await b.tasks())

    assert on_two(pg_url, body) == {task.name for task in tasks}


def test_a_rate_limit_and_a_concurrency_key_hold_across_boxes(pg_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> None:
        await a.publish_tasks([TaskDefaults("limited", "default", None, None, rate_limit=3,
                                            rate_window=3600.0)])
        await a.submit_many([job("limited") for _ in range(20)])
        await a.submit_many([dataclasses.replace(job("keyed"), concurrency_key="user-1",
                                                 concurrency_limit=1) for _ in range(20)])

        async def grab(store: PostgresStore, owner: str) -> list[str]:
            # One by one, as the pool's policy claims while a rate limit is in play (the
            # window is counted once per statement).
            return [c.task for _ in range(15) for c in await store.claim(owner, 1, 30)]

        tasks = [t for got in await asyncio.gather(grab(a, "box-a"), grab(b, "box-b"))
                 for t in got]
        assert tasks.count("limited") == 3  # the window's limit, whichever box started them
        assert tasks.count("keyed") == 1  # the key's limit: one runs at a time

    on_two(pg_url, body)


def test_a_claim_whose_clock_lags_another_boxes_still_counts_every_start(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A claim reads the clock before it waits for its turn: box B's claim at 101.05 can
    # commit before box A's, read at 100.9. B's must not prune starts that A still counts.
    clock = [100.0]
    monkeypatch.setattr(pg_store, "time", SimpleNamespace(time=lambda: clock[0]))

    async def body(a: PostgresStore, b: PostgresStore) -> list[int]:
        await a.publish_tasks([TaskDefaults("limited", "default", None, None, rate_limit=2,
                                            rate_window=1.0)])
        await a.submit_many([job("limited") for _ in range(5)])
        taken = []
        for store, at in ((a, 100.0), (a, 100.02), (b, 101.05), (a, 100.9)):
            clock[0] = at
            taken.append(len(await store.claim("box", 1, 30)))
        return taken

    # The last would make three starts within 0.9 s, over the limit of 2 a second.
    assert on_two(pg_url, body) == [1, 1, 1, 0]


def test_two_boxes_migrating_at_once_apply_each_migration_once(pg_cluster: PgCluster) -> None:
    url = fresh_database(pg_cluster, template="template0")
    try:
        results: list[object] = []
        threads = [threading.Thread(target=lambda: results.append(schema.migrate(url)))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [schema.SCHEMA_VERSION] * 3
        with psycopg.connect(url) as conn:
            versions = [v for (v,) in conn.execute(
                "SELECT version FROM schema_version ORDER BY version")]
            assert versions == list(range(1, schema.SCHEMA_VERSION + 1))
            conn.execute("INSERT INTO schema_version VALUES (%s, 0)",
                         (schema.SCHEMA_VERSION + 1,))
            conn.commit()
        with pytest.raises(StoreError, match="newer"):
            schema.migrate(url)
    finally:
        drop_database(pg_cluster, url)


def test_the_unique_index_covers_exactly_the_live_states(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        (ddl,) = conn.execute("SELECT indexdef FROM pg_indexes "
                              "WHERE indexname = 'jobs_unique_live'").fetchone() or ("",)
    # PostgreSQL prints IN (...) as = ANY (ARRAY[...]).
    assert all(f"'{state}'" in ddl for state in LIVE_STATES), ddl
    assert ddl.count("'::text") == len(LIVE_STATES), ddl


def test_a_read_only_server_is_unavailable_not_an_error(pg_cluster: PgCluster) -> None:
    pg_url = fresh_database(pg_cluster)  # its own: the setting outlives the test
    name = pg_url.split("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

    async def main() -> None:
        store = await PostgresStore.open(pg_url)  # new sessions start read-only
        try:
            with pytest.raises(StoreUnavailable, match="read-only"):
                await store.check_writable()
            with pytest.raises(StoreUnavailable):
                await store.submit(job())
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        drop_database(pg_cluster, pg_url)


def test_connect_reads_the_database_url_and_sizes_the_pool_by_role(pg_url: str) -> None:
    async def main() -> None:
        # The fields connect reads.
        config: Any = SimpleNamespace(database=DatabaseUrl(pg_url), database_listen=DatabaseUrl())
        store = await PostgresStore.connect(config, "api")
        try:
            assert store._db.pool.max_size == 8
            await store.submit(job())
            assert (await store.counts())["queued"] == 1
        finally:
            await store.close()
        with pytest.raises(ValueError, match="role"):
            await PostgresStore.open(pg_url, role="worker")

    asyncio.run(main())


def test_pooled_connections_leave_no_prepared_statements(pg_url: str) -> None:
    # PgBouncer in transaction mode hands each transaction any server connection: a
    # statement prepared on one would be missing on the next.
    async def main() -> list[Any]:
        store = await PostgresStore.open(pg_url, role="cli")  # one connection, reused
        try:
            for _ in range(10):
                await store.submit(job())
                for claim in await store.claim("p", 1, 30):
                    await store.finish([ok(claim.id, claim.token)], max_crashes=3)
            return await store._db.fetchall("SELECT name FROM pg_prepared_statements")
        finally:
            await store.close()

    assert asyncio.run(main()) == []


def test_a_wake_on_one_box_reaches_the_listener_of_another(pg_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> set[Wake]:
        source = await a.listen()
        try:
            readable = asyncio.Event()
            asyncio.get_running_loop().add_reader(source.fileno(), readable.set)
            b.wake(Wake.SUBMITTED)  # returns at once: NOTIFY goes in the background
            b.wake(Wake.CANCELLED)
            heard: set[Wake] = set()
            while heard != {Wake.SUBMITTED, Wake.CANCELLED}:
                await asyncio.wait_for(readable.wait(), 10)
                readable.clear()
                heard |= source.drain()
            asyncio.get_running_loop().remove_reader(source.fileno())
            return heard
        finally:
            source.close()

    assert on_two(pg_url, body) == {Wake.SUBMITTED, Wake.CANCELLED}


def test_compact_and_vacuum_give_space_back_the_postgresql_way(pg_url: str) -> None:
    async def main() -> tuple[int, int, int]:
        store = await PostgresStore.open(pg_url)
        try:
            await store.submit_many([job() for _ in range(200)])
            for claim in await store.claim("p", 200, 30):
                await store.finish([ok(claim.id, claim.token)], max_crashes=3)
            assert await store.prune(JobState.SUCCEEDED, 1e12, 500) == 200
            before = await store._db.fetchall("SELECT pg_relation_filenode('jobs')")
            assert await store.compact(max_pages=256) is False  # one VACUUM does it all
            (vacuumed,) = await store._db.fetchall("SELECT vacuum_count FROM pg_stat_user_tables "
                                             "WHERE relname = 'jobs'")
            await store.vacuum()
            after = await store._db.fetchall("SELECT pg_relation_filenode('jobs')")
            return vacuumed[0], before[0][0], after[0][0]
        finally:
            await store.close()

    vacuumed, before, after = asyncio.run(main())
    assert vacuumed >= 1
    assert before != after  # VACUUM FULL rewrote the table into a new file


def test_the_store_works_behind_pgbouncer_in_transaction_mode(pg_url: str,
                                                             pgbouncer: Bouncer) -> None:
    # One server connection behind the bouncer: every client's transactions interleave on
    # it, so a prepared statement or any session state of one client would reach another.
    url = pgbouncer.url(pg_url.split("?")[0].rsplit("/", 1)[1])

    async def body(a: PostgresStore, b: PostgresStore) -> None:
        await a.publish_tasks([TaskDefaults("limited", "default", None, None, rate_limit=2,
                                            rate_window=3600.0)])
        await a.submit_many([job() for _ in range(40)] + [job("limited") for _ in range(4)])
        keyed = dataclasses.replace(job(), idempotency_key="k")
        assert (await b.submit_once(keyed))[0].id == (await a.submit_once(keyed))[0].id

        async def work(store: PostgresStore, owner: str) -> int:
            done = 0
            while claims := await store.claim(owner, 1, 30):
                await store.note([Note(c.id, c.token, "progress", {"fraction": 0.5})
                                  for c in claims])
                finished = await store.finish([ok(c.id, c.token) for c in claims], 3)
                done += len(finished)
            return done

        done = await asyncio.gather(*(work(store, f"box-{i}") for i, store in
                                      enumerate((a, b, a, b))))
        assert sum(done) == 43  # 41 plain (one keyed), 2 of the rate-limited task
        counts = await b.counts()
        assert (counts["succeeded"], counts["queued"]) == (43, 2)

    on_two(url, body)


def test_behind_pgbouncer_a_pool_listens_where_database_listen_says(
        pg_url: str, pgbouncer: Bouncer) -> None:
    # A transaction-mode bouncer cannot keep a LISTEN: the pools' one listening connection
    # goes to the server itself, while every statement goes through the bouncer.
    pooled = pgbouncer.url(pg_url.split("?")[0].rsplit("/", 1)[1])
    config: Any = SimpleNamespace(database=DatabaseUrl(pooled),
                                  database_listen=DatabaseUrl(pg_url))

    async def main() -> set[Wake]:
        pool = await PostgresStore.connect(config, "pool")
        api = await PostgresStore.connect(config, "api")
        source = await pool.listen()
        try:
            listener = await pool._db.fetchall(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' "
                "AND application_name <> 'pgbouncer'")
            assert listener == [(1,)]
            readable = asyncio.Event()
            asyncio.get_running_loop().add_reader(source.fileno(), readable.set)
            api.wake(Wake.SUBMITTED)
            await asyncio.wait_for(readable.wait(), 10)
            asyncio.get_running_loop().remove_reader(source.fileno())
            return source.drain()
        finally:
            source.close()
            await pool.close()
            await api.close()

    assert asyncio.run(main()) == {Wake.SUBMITTED}


def test_a_server_restart_is_unavailable_once_then_the_pool_reconnects(
        pg_cluster: PgCluster, pg_url: str) -> None:
    async def main() -> None:
        store = await PostgresStore.open(pg_url, role="cli")  # one connection, kept open
        try:
            await store.submit(job())
            pg_cluster.restart()  # the connection the pool holds is cut
            outcomes = []
            for _ in range(2):
                try:
                    outcomes.append((await store.counts())["queued"])
                except StoreUnavailable:  # a 503 to the client, never a 500
                    outcomes.append(None)
            # The request on the cut connection is unavailable; the pool drops that
            # connection and the next request gets a fresh one.
            assert outcomes == [None, 1], outcomes
        finally:
            await store.close()

    asyncio.run(main())


def test_a_listener_whose_session_drops_stops_quietly(pg_url: str) -> None:
    async def main() -> None:
        store = await PostgresStore.open(pg_url)
        try:
            source = await store.listen()
            # An administrator (or a failover) ends the listener's session.
            await store._db.fetchall("SELECT pg_terminate_backend(pid) FROM "
                                     "pg_stat_activity WHERE query LIKE 'LISTEN%%'")
            await asyncio.sleep(0.2)  # the termination reaches the socket
            assert source.drain() == set()  # no exception: the pool goes on polling
            source.close()
        finally:
            await store.close()

    asyncio.run(main())


def test_two_boxes_recovering_and_pruning_at_once_do_each_job_once(pg_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> None:
        await a.submit_many([job(attempts=5) for _ in range(60)])
        await a.claim("dead-box", 60, 30)
        await a._db.fetchall("UPDATE jobs SET lease_until = 1")  # the box died: leases ran out
        recovered = await asyncio.gather(
            *(store.recover(f"box-{i}", max_crashes=3)
              for i, store in enumerate((a, b, a, b))))
        assert sum(recovered) == 60
        crashes = await a._db.fetchall("SELECT crashes, count(*) FROM jobs GROUP BY 1")
        assert crashes == [(1, 60)]  # each charged once, whoever re-queued it

        for claim in await a.claim("box-0", 60, 30):
            await a.finish([ok(claim.id, claim.token)], max_crashes=3)
        pruned = await asyncio.gather(*(store.prune(JobState.SUCCEEDED, 1e12, 25)
                                        for store in (a, b, a, b)))
        assert sum(pruned) == 60 and sum((await b.counts()).values()) == 0

    on_two(pg_url, body)
