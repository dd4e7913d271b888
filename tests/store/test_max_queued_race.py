"""The server-wide max_queued holds exactly while several API workers submit at once, on every
backend: through the guarded one-statement insert (plain jobs) and through the quota
transaction (tenants with their own caps), and with both racing. On PostgreSQL each
statement reads the count before the others' inserts commit (READ COMMITTED): without a
lock, a flood overshot the cap by what was in flight."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scholarsource.limits import TenantLimits
from scholarsource.quotas import Ask, QuotaPolicy
from scholarsource.store.admission import Admitted, Refused
from scholarsource.store.base import Spawn, Store
from scholarsource.store.fanout import child_id
from scholarsource.store.postgres import sql
from scholarsource.store.postgres import store as pgstore
from tests.helpers import wait_until
from tests.pgcluster import Bouncer
from tests.store.backends import Backend
from tests.store.test_quotas import job

CAP = 30
WORKERS = 4
SUBMITS = 80


async def flood(stores: list[Store], tenants: list[str], quota: QuotaPolicy) -> int:
    """SUBMITS lone submits, spread over the tenants and the stores, at once: how many went
    in (the others must be refused quota_exceeded)."""
    async def one(store: Store, i: int) -> bool:
        tenant = tenants[i % len(tenants)]
        (result,) = await store.admit([(Ask(tenant), [job(tenant, n=i)])], quota)
        assert isinstance(result, Admitted) or (
            isinstance(result, Refused) and result.code == "quota_exceeded")
        return isinstance(result, Admitted)

    return sum(await asyncio.gather(*(one(stores[i % len(stores)], i)
                                      for i in range(SUBMITS))))


@contextlib.asynccontextmanager
async def workers(backend: Backend, path: Path) -> AsyncIterator[list[Store]]:
    """WORKERS stores on one database, as the API workers of a server (or of several)."""
    stores = [await backend.open(path) for _ in range(WORKERS)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


def test_plain_submits_at_once_stop_exactly_at_the_server_cap(
        backend: Backend, tmp_path: Path) -> None:
    async def go() -> tuple[int, dict[str, int]]:
        async with workers(backend, tmp_path / "q.db") as stores:
            admitted = await flood(stores, ["default"], QuotaPolicy(max_queued=CAP))
            return admitted, await stores[0].live_counts()

    assert asyncio.run(go()) == (CAP, {"default": CAP})


@pytest.mark.parametrize("tenants", [["a", "b"], ["a", "b", "c", "d"]],
                         ids=["quota transactions", "both paths"])
def test_tenants_submitting_at_once_share_the_server_cap_exactly(
        backend: Backend, tmp_path: Path, tenants: list[str]) -> None:
    # "a" and "b" have caps of their own (the quota transaction, with a lock per tenant);
    # "c" and "d" none (the guarded insert): all count against the server's cap.
    roomy = TenantLimits(max_queued=SUBMITS)
    quota = QuotaPolicy(tenants={"a": roomy, "b": roomy}, max_queued=CAP)

    async def go() -> tuple[int, int]:
        async with workers(backend, tmp_path / "q.db") as stores:
            admitted = await flood(stores, tenants, quota)
            return admitted, sum((await stores[0].live_counts()).values())

    assert asyncio.run(go()) == (CAP, CAP)


def test_children_and_submits_at_once_stop_exactly_at_the_server_cap(
        backend: Backend, tmp_path: Path) -> None:
    # The pool writes a running job's children (over the cap: cancelled, quota_exceeded)
    # while the API workers flood: children count against the same cap.
    quota = QuotaPolicy(max_queued=CAP)

    async def race(pool: Store, stores: list[Store]) -> dict[str, int]:
        await pool.submit_many([job()])
        (parent,) = await pool.claim("pool", 1, 30)

        async def children(first: int) -> None:
            await pool.spawn([Spawn(parent.id, parent.token, dataclasses.replace(
                job(n=key), id=child_id(parent.id, key), parent_id=parent.id))
                for key in range(first, first + 10)], quota)

        await asyncio.gather(flood(stores, ["default"], quota),
                             *(children(first) for first in (0, 10, 20)))
        return await pool.live_counts()

    async def go() -> dict[str, int]:
        pool = await backend.open(tmp_path / "q.db")
        try:
            async with workers(backend, tmp_path / "q.db") as stores:
                return await race(pool, stores)
        finally:
            await pool.close()

    assert asyncio.run(go()) == {"default": CAP}


@pytest.mark.parametrize("limits", [{}, {"default": TenantLimits(max_queued=10**6)}],
                         ids=["guarded insert", "quota transaction"])
def test_a_postgres_submit_holds_the_server_quota_lock(
        pg_url: str, tmp_path: Path, limits: dict[str, TenantLimits]) -> None:
    # Far from the cap a submit holds the lock shared: it goes in beside another holder, and
    # waits only while one holds it exclusive (a submit near the cap counting exactly).
    quota = QuotaPolicy(tenants=limits, max_queued=10**9)

    def submit() -> bool:
        async def go() -> bool:
            store = await Backend("postgres", pg_url).open(tmp_path)
            try:
                (result,) = await store.admit([(Ask("default"), [job()])], quota)
                return isinstance(result, Admitted)
            finally:
                await store.close()

        return asyncio.run(go())

    def waiting(watcher: psycopg.Connection[Any]) -> bool:
        row = watcher.execute("SELECT count(*) FROM pg_locks "
                              "WHERE locktype = 'advisory' AND NOT granted").fetchone()
        return row is not None and row[0] > 0

    with psycopg.connect(pg_url, autocommit=True) as holder, \
            psycopg.connect(pg_url, autocommit=True) as watcher, \
            ThreadPoolExecutor(1) as thread:
        with holder.transaction():
            holder.execute(sql.QUOTA_SHARED)
            assert thread.submit(submit).result(timeout=20)
        with holder.transaction():
            holder.execute(f"SELECT pg_advisory_xact_lock(hashtextextended("
                           f"'{sql.SERVER_QUOTA}', 0))")
            pending = thread.submit(submit)
            wait_until(lambda: waiting(watcher), message="the submit to wait for the lock")
            assert not pending.done()
        assert pending.result(timeout=20)


def test_params_go_in_exactly_under_the_server_cap(backend: Backend, tmp_path: Path) -> None:
    # On PostgreSQL the guarded insert travels with its lock in one query string, its values
    # quoted by the driver: whatever a client sends is stored as sent.
    tricky = {"s": "it's \\ \"q\" %s %(cap)s ; -- ' OR 1=1 \u00e9\u202e", "n": [1, None]}

    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        try:
            new = dataclasses.replace(job(), params=tricky)
            (result,) = await store.admit([(Ask("default"), [new])],
                                          QuotaPolicy(max_queued=10**9))
            assert isinstance(result, Admitted)
            stored = await store.get("default", result.new[0].id)
            assert stored is not None and stored.params == tricky
        finally:
            await store.close()

    asyncio.run(go())


def test_capped_submits_go_through_pgbouncer_in_transaction_mode(
        pg_url: str, pgbouncer: Bouncer, tmp_path: Path) -> None:
    # Far from the cap the lock and the insert travel as one query string; near it, the
    # quota transaction: both keep to the bouncer's one server connection per transaction.
    backend = Backend("postgres", pgbouncer.url(pg_url.split("?")[0].rsplit("/", 1)[1]))

    async def go() -> tuple[int, int, dict[str, int]]:
        async with workers(backend, tmp_path) as stores:
            far = await flood(stores, ["default"], QuotaPolicy(max_queued=10**9))
            near = await flood(stores, ["default"], QuotaPolicy(max_queued=SUBMITS + CAP))
            return far, near, await stores[0].live_counts()

    assert asyncio.run(go()) == (SUBMITS, CAP, {"default": SUBMITS + CAP})


def test_far_from_a_modest_cap_postgres_submits_share_the_lock(pg_url: str,
                                                               tmp_path: Path) -> None:
    # The margin counts the database's open connections, not max_connections (200 on the
    # test cluster: x 1,024 it was past a cap of 150,000, and every submit went exclusive).
    async def go() -> list[bool]:
        store: Any = await Backend("postgres", pg_url).open(tmp_path)
        taken: list[bool] = []
        original = store._insert_sharing

        async def spy(args: dict[str, Any]) -> bool:
            taken.append(await original(args))
            return taken[-1]

        store._insert_sharing = spy
        try:
            for i in range(3):
                (result,) = await store.admit([(Ask("default"), [job(n=i)])],
                                              QuotaPolicy(max_queued=150_000))
                assert isinstance(result, Admitted)
            assert not store._near_cap
        finally:
            await store.close()
        return taken

    assert asyncio.run(go()) == [True, True, True]


def test_a_group_commit_of_several_tenants_never_deadlocks_with_a_one_statement_insert(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # API worker 1's group commit writes its requests in arrival order: tenant b's plain job,
    # then tenant a's keyed one, two statements. Worker 2 inserts plain jobs of a and b in
    # one statement, whose trigger takes a's count row, then b's. Taken in arrival order,
    # worker 1's rows made a cycle: PostgreSQL broke it after deadlock_timeout and every
    # request of one group got a 503. The gap between worker 1's statements is widened.
    original = pgstore._PostgresQuotaTx.insert_new

    async def slow(self: Any, news: Any, jobs: Any) -> Any:
        await asyncio.sleep(0.3)
        return await original(self, news, jobs)

    monkeypatch.setattr(pgstore._PostgresQuotaTx, "insert_new", slow)
    policy = QuotaPolicy(max_queued=1_000_000)

    async def go() -> list[Any]:
        first = await Backend("postgres", pg_url).open(tmp_path)
        second = await Backend("postgres", pg_url).open(tmp_path)
        try:
            grouped = asyncio.create_task(first.admit(
                [(Ask("b"), [job("b", n=1)]), (Ask("a"), [job("a", key="k")])], policy))
            await asyncio.sleep(0.1)
            plain = asyncio.create_task(second.admit(
                [(Ask("a"), [job("a", n=2)]), (Ask("b"), [job("b", n=3)])], policy))
            return list(await asyncio.gather(grouped, plain, return_exceptions=True))
        finally:
            await first.close()
            await second.close()

    results = asyncio.run(go())
    assert all(isinstance(r, list) and all(isinstance(a, Admitted) for a in r)
               for r in results), results
