"""Quotas in the store, on every backend: token buckets per key and per tenant, max_queued
per tenant and server-wide, taken in the submit's own transaction; a refusal writes
nothing and takes no tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from scholarsource.limits import Rate, TenantLimits
from scholarsource.quotas import Ask, QuotaPolicy, TenantOverride
from scholarsource.store.admission import Admission, Admitted, Refused
from scholarsource.store.base import Ending, JobState, NewJob, Outcome, Reused, Store
from tests.store.backends import Backend


def job(tenant: str = "default", key: str | None = None, n: int = 0) -> NewJob:
    return NewJob(task="echo", params={"n": n}, queue="default", priority=0, max_attempts=1,
                  tenant=tenant, idempotency_key=key)


def policy(rate: str | None = None, max_queued: int | None = None,
           server: int | None = None, tenant: str = "default") -> QuotaPolicy:
    limits = TenantLimits(rate=None if rate is None else Rate(int(rate.split("/")[0]), 60.0),
                          max_queued=max_queued)
    return QuotaPolicy(tenants={tenant: limits}, max_queued=server)


def kinds(results: list[Admission]) -> list[str]:
    """Each admission as "Admitted" or its refusal's code."""
    return [type(r).__name__ if isinstance(r, Admitted) else r.code for r in results]


async def total(store: Store) -> int:
    return sum((await store.counts()).values())


def test_a_tenant_bucket_admits_its_limit_and_a_refusal_takes_nothing(
        backend: Backend, tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        quota = policy(rate="5/m")
        ask = Ask("default")
        first = (await store.admit([(ask, [job(n=i) for i in range(3)])], quota))[0]
        assert isinstance(first, Admitted) and len(first.new) == 3
        assert first.headers["RateLimit-Limit"] == "5"
        assert first.headers["RateLimit-Remaining"] == "2"
        # 3 more do not fit in the 2 left: refused whole, nothing written, nothing taken.
        over = (await store.admit([(ask, [job(n=i) for i in range(3)])], quota))[0]
        assert isinstance(over, Refused) and over.code == "rate_limited"
        assert int(over.headers["Retry-After"]) >= 1
        assert await total(store) == 3
        rest = (await store.admit([(ask, [job(), job()])], quota))[0]
        assert isinstance(rest, Admitted) and rest.headers["RateLimit-Remaining"] == "0"
        assert await total(store) == 5
        await store.close()

    asyncio.run(go())


def test_a_key_bucket_and_the_tenant_bucket_both_apply(backend: Backend,
                                                       tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        quota = policy(rate="10/m")
        alice = Ask("default", key_id="k1", key_rate=Rate(2, 60.0))
        bob = Ask("default", key_id="k2", key_rate=Rate(100, 60.0))
        results = await store.admit([(alice, [job()]), (alice, [job()]), (alice, [job()]),
                                     (bob, [job()] * 8)], quota)
        assert [type(r).__name__ for r in results] == ["Admitted", "Admitted", "Refused",
                                                       "Admitted"]
        # The tenant has 10 - 2 - 8 = 0 left: bob's key is far from its own limit.
        refused = (await store.admit([(bob, [job()])], quota))[0]
        assert isinstance(refused, Refused) and "tenant 'default'" in refused.message
        assert await total(store) == 10
        await store.close()

    asyncio.run(go())


def test_max_queued_counts_non_final_jobs_through_every_change(backend: Backend,
                                                               tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        quota = policy(max_queued=3)
        ask = Ask("default")
        assert isinstance((await store.admit([(ask, [job(n=i) for i in range(3)])],
                                             quota))[0], Admitted)
        full = (await store.admit([(ask, [job()])], quota))[0]
        assert isinstance(full, Refused) and full.code == "quota_exceeded"
        assert await store.live_counts() == {"default": 3}
        # One finishes, one is cancelled: two places free up.
        (claim,) = await store.claim("pool", 1, 30)
        await store.finish([Outcome(claim.id, claim.token, Ending.SUCCEEDED,
                                    result_json="1")], max_crashes=3)
        jobs, _ = await store.list_jobs("default", status="queued")
        await store.cancel("default", jobs[0].id)
        assert await store.live_counts() == {"default": 1}
        assert isinstance((await store.admit([(ask, [job(), job()])], quota))[0], Admitted)
        # A retried cancelled job counts again.
        assert (await store.retry("default", jobs[0].id))[1]
        assert await store.live_counts() == {"default": 4}
        # Another tenant has its own count; the server-wide cap counts everyone.
        other = policy(server=6)
        assert isinstance((await store.admit([(Ask("t2"), [job("t2")] * 2)], other))[0],
                          Admitted)
        capped = (await store.admit([(Ask("t2"), [job("t2")])], other))[0]
        assert isinstance(capped, Refused) and "the server takes at most 6" in capped.message
        await store.close()

    asyncio.run(go())


def test_one_refused_group_among_many_leaves_the_others_in(backend: Backend,
                                                           tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        quota = QuotaPolicy(tenants={"small": TenantLimits(max_queued=1)})
        results = await store.admit([(Ask("big"), [job("big")]),
                                     (Ask("small"), [job("small"), job("small")]),
                                     (Ask("big"), [job("big")])], quota)
        assert [type(r).__name__ for r in results] == ["Admitted", "Refused", "Admitted"]
        assert await store.live_counts() == {"big": 2}
        await store.close()

    asyncio.run(go())


def test_reused_jobs_take_no_tokens_and_a_refused_keyed_group_is_rolled_back(
        backend: Backend, tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        quota = policy(rate="3/m")
        ask = Ask("default")
        first = (await store.admit([(ask, [job(key="a"), job(key="b")])], quota))[0]
        assert isinstance(first, Admitted) and len(first.new) == 2
        again = (await store.admit([(ask, [job(key="a"), job(key="b")])], quota))[0]
        assert isinstance(again, Admitted)
        assert [reused for _, reused in again.jobs] == [Reused.IDEMPOTENT] * 2
        assert [j.id for j, _ in again.jobs] == [j.id for j, _ in first.jobs]
        # 1 token left: a, plus two new ones (one keyed, one plain) is refused whole.
        over = (await store.admit([(ask, [job(key="a"), job(key="c"), job()])], quota))[0]
        assert isinstance(over, Refused)
        assert await total(store) == 2
        assert (await store.list_jobs("default"))[0][0].idempotency_key == "b"
        last = (await store.admit([(ask, [job(key="c")])], quota))[0]
        assert isinstance(last, Admitted) and len(last.new) == 1
        await store.close()

    asyncio.run(go())


def test_keyed_submits_share_one_transaction_and_each_refusal_writes_nothing(
        backend: Backend, tmp_path: Path) -> None:
    # The API's group commit: several requests, each one keyed job, in one admit call.
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        ask = Ask("default")
        results = await store.admit([
            (ask, [job(key="a")]), (ask, [job()]), (ask, [job(key="a")]),
            (ask, [job(key="a", n=1)]), (ask, [job(key="b")]), (ask, [job(key="c")]),
            (ask, [job(key="a")])], policy(rate="3/m"))
        assert kinds(results) == ["Admitted", "Admitted", "Admitted", "idempotency_key_reused",
                         "Admitted", "rate_limited", "Admitted"]
        first, _, again, _, _, _, replay = results
        assert isinstance(first, Admitted) and isinstance(again, Admitted)
        assert isinstance(replay, Admitted)  # a replay over the rate still answers its job
        assert replay.headers["RateLimit-Remaining"] == "0"  # and says what is left
        assert [j.id for j, _ in again.jobs] == [j.id for j, _ in first.jobs]
        assert [j.id for j, _ in replay.jobs] == [j.id for j, _ in first.jobs]
        assert again.jobs[0][1] is Reused.IDEMPOTENT and again.new == []
        jobs, _ = await store.list_jobs("default")
        assert sorted(str(j.idempotency_key) for j in jobs) == ["None", "a", "b"]
        await store.close()

    asyncio.run(go())


def test_keyed_and_unique_submits_far_from_any_quota_go_in_one_insert_and_keep_answers(
        backend: Backend, tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        unique = dataclasses.replace(job(n=7), unique=True)
        cached = dataclasses.replace(job(n=8), cache_ttl=60.0)
        ask = Ask("default")
        results = await store.admit([
            (ask, [job(key="x")]), (ask, [job(key="x")]), (ask, [job(key="x", n=1)]),
            (ask, [unique]), (ask, [unique]), (ask, [cached]), (ask, [job(key="y")])],
            QuotaPolicy(max_queued=1000))
        assert kinds(results) == ["Admitted", "Admitted", "idempotency_key_reused", "Admitted",
                         "Admitted", "Admitted", "Admitted"]
        answers = [r.jobs[0] for r in results if isinstance(r, Admitted)]
        assert [reused for _, reused in answers] == [None, Reused.IDEMPOTENT, None,
                                                     Reused.UNIQUE, None, None]
        assert answers[1][0].id == answers[0][0].id and answers[3][0].id == answers[2][0].id
        assert await total(store) == 4  # x, the unique job, the cached one, y
        # Near the server's cap each is checked in turn: one place left for two new jobs.
        near = await store.admit([(ask, [job(key="p")]), (ask, [job(key="q")]),
                                  (ask, [job(key="x")])], QuotaPolicy(max_queued=5))
        assert kinds(near) == ["Admitted", "quota_exceeded", "Admitted"]
        assert await total(store) == 5
        await store.close()

    asyncio.run(go())


def test_stored_tenant_limits_win_over_the_config(backend: Backend, tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        config = {"acme": TenantLimits(rate=Rate(100, 3600.0), max_queued=50, weight=2)}
        await store.set_tenant_limits("acme", TenantOverride(rate=Rate(1, 60.0)))
        await store.set_tenant_limits("acme", TenantOverride(weight=5))
        await store.set_tenant_limits("beta", TenantOverride(max_queued=7))
        limits = await store.tenant_limits(config)
        assert limits == {"acme": TenantLimits(Rate(1, 60.0), 50, 5),
                          "beta": TenantLimits(None, 7, 1)}
        quota = QuotaPolicy(tenants=config)
        assert isinstance((await store.admit([(Ask("acme"), [job("acme")])], quota))[0],
                          Admitted)
        assert isinstance((await store.admit([(Ask("acme"), [job("acme")])], quota))[0],
                          Refused)
        assert await store.clear_tenant_limits("acme")
        assert not await store.clear_tenant_limits("acme")
        assert (await store.tenant_limits(config))["acme"] == config["acme"]
        await store.close()

    asyncio.run(go())


def test_the_bucket_is_exact_across_processes_submitting_at_once(
        backend: Backend, tmp_path: Path) -> None:
    """Four stores (as four API workers) race 60 submits for 30 tokens: exactly 30 win."""
    async def go() -> None:
        stores = [await backend.open(tmp_path / "q.db") for _ in range(4)]
        quota = policy(rate="30/m")

        async def one(store: Store, i: int) -> bool:
            result = (await store.admit([(Ask("default"), [job(n=i)])], quota))[0]
            return isinstance(result, Admitted)

        wins = await asyncio.gather(*(one(stores[i % 4], i) for i in range(60)))
        assert sum(wins) == 30
        assert await total(stores[0]) == 30
        for store in stores:
            await store.close()

    asyncio.run(go())


def test_a_rate_set_only_in_the_store_applies_to_plain_submits(backend: Backend,
                                                               tmp_path: Path) -> None:
    """No bucket in the config: SQLite tries its one-statement insert, whose guard must
    see the stored limits and leave the decision to the quota transaction."""
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        quota = QuotaPolicy(max_queued=100)
        assert isinstance((await store.admit([(Ask("acme"), [job("acme")])], quota))[0],
                          Admitted)
        await store.set_tenant_limits("acme", TenantOverride(rate=Rate(1, 3600.0)))
        results = await store.admit([(Ask("acme"), [job("acme")]),
                                     (Ask("acme"), [job("acme")]),
                                     (Ask("other"), [job("other")])], quota)
        assert [type(r).__name__ for r in results] == ["Admitted", "Refused", "Admitted"]
        assert await store.live_counts() == {"acme": 2, "other": 1}
        await store.close()

    asyncio.run(go())


def test_the_tenant_counts_follow_every_change_of_state(backend: Backend,
                                                        tmp_path: Path) -> None:
    """After each step the store's counts equal the jobs not yet finished, per tenant."""
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")

        async def check() -> None:
            expected = {}
            for tenant in ("a", "b"):
                counts = await store.counts(tenant)
                live = sum(n for state, n in counts.items()
                           if state not in ("succeeded", "dead", "cancelled"))
                if live:
                    expected[tenant] = live
            assert await store.live_counts() == expected

        later = NewJob(task="echo", params={}, queue="default", priority=0, max_attempts=1,
                       tenant="b", run_at=time.time() + 3600)
        await store.submit_many([job("a", n=i) for i in range(6)] + [later] * 2)
        await check()
        claims = await store.claim("pool", 4, 30)
        await store.finish([Outcome(claims[0].id, claims[0].token, Ending.SUCCEEDED,
                                    result_json="1"),
                            Outcome(claims[1].id, claims[1].token, Ending.FAILED,
                                    error="no")], max_crashes=3)
        await store.requeue([(claims[2].id, claims[2].token)], "shutdown")
        await check()
        # The pool that held claims[3] died: with max_crashes 1 it is dead.
        assert await store.recover("next", box="", max_crashes=1) == 1
        await check()
        assert await store.retry_dead("a") == 2
        await check()
        await store.cancel_matching("b")
        await store.claim("pool", 10, 30)
        await store.finish([Outcome(c.id, c.token, Ending.FAILED, error="no")
                            for c in await store.claim("pool", 10, 30)], max_crashes=3)
        await check()
        await store.purge_dead("a")
        assert await store.prune(JobState.SUCCEEDED, time.time() + 1, 100) == 1
        await check()
        await store.close()

    asyncio.run(go())


def test_a_stored_weight_alone_leaves_the_tenants_submits_unlimited(
        backend: Backend, tmp_path: Path) -> None:
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        await store.set_tenant_limits("acme", TenantOverride(weight=3))
        results = await store.admit([(Ask("acme"), [job("acme")] * 5)], QuotaPolicy())
        assert isinstance(results[0], Admitted) and results[0].headers == {}
        assert await store.live_counts() == {"acme": 5}
        await store.close()

    asyncio.run(go())


def test_a_batch_of_any_size_goes_in_whole_or_not_at_all(backend: Backend,
                                                         tmp_path: Path) -> None:
    # Up to 1,024 jobs take the quick path (one guarded INSERT, on SQLite padded up to 512 or
    # 1,024 rows); more take the quota transaction. Either way the server's cap counts them
    # all: a batch that does not fit is refused whole.
    async def go() -> None:
        store = await backend.open(tmp_path / "q.db")
        ask = Ask("default")
        sizes = [257, 512, 513, 1000, 1024, 1025]
        quota = QuotaPolicy(max_queued=sum(sizes))
        for n in sizes:
            result = (await store.admit([(ask, [job(n=i) for i in range(n)])], quota))[0]
            assert isinstance(result, Admitted) and len(result.new) == n
            assert [j.params["n"] for j in result.new] == list(range(n))
        assert await store.live_counts() == {"default": sum(sizes)}
        jobs, _ = await store.list_jobs("default", limit=1000)
        assert {j.params["n"] for j in jobs} <= set(range(1025)) and len(jobs) == 1000
        for n in (1, 600, 1100):
            over = (await store.admit([(ask, [job(n=i) for i in range(n)])], quota))[0]
            assert isinstance(over, Refused) and over.code == "quota_exceeded"
        assert await total(store) == sum(sizes)
        await store.close()

    asyncio.run(go())
