"""The result cache and unique jobs in the SQLite store: each lookup is an index probe, the
check and the insert are one statement, and nothing crosses tenants."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import (
    LIVE_STATES,
    Ending,
    NewJob,
    Outcome,
    Reused,
    Store,
    fingerprint,
)
from scholarsource.store.sqlite import CACHED, LIVE_TWIN, SUBMIT_UNCACHED
from tests.helpers import wait_until
from tests.store.backends import Backend
from tests.store.test_sqlite import query_plan, run


def new(params: dict[str, object] | None = None, *, tenant: str = "default",
        cache_ttl: float | None = None, bypass_cache: bool = False,
        unique: bool = False, key: str | None = None) -> NewJob:
    return NewJob(task="echo", params={"course": "CS101"} if params is None else params,
                  queue="default", priority=0, max_attempts=1, tenant=tenant,
                  cache_ttl=cache_ttl, bypass_cache=bypass_cache, unique=unique,
                  idempotency_key=key)


async def run_to_success(store: Store) -> None:
    """Claim every queued job and record it succeeded (a claim is one tenant's turn)."""
    while claims := await store.claim("pool", 100, 30):
        await store.finish([Outcome(c.id, c.token, Ending.SUCCEEDED, result_json="1")
                            for c in claims], max_crashes=3)


def test_each_lookup_is_an_index_probe_at_any_history_size(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    cached = query_plan(conn, CACHED)
    # Equality on tenant and fingerprint, a range on finished_at, newest first: no sort.
    assert cached.startswith("SEARCH jobs USING INDEX jobs_cached (tenant=? AND "
                             "fingerprint=? AND finished_at>?)"), cached
    assert "TEMP B-TREE" not in cached and "|" not in cached
    twin = query_plan(conn, LIVE_TWIN)
    assert twin == "SEARCH jobs USING INDEX jobs_unique_live (tenant=? AND fingerprint=?)"
    # The insert's own check probes the same index (a correlated scalar subquery).
    insert = query_plan(conn, SUBMIT_UNCACHED)
    assert "USING INDEX jobs_cached (tenant=? AND fingerprint=? AND finished_at>?)" in insert
    assert "SCAN jobs" not in insert, insert
    conn.close()


def test_the_unique_index_covers_exactly_the_live_states(tmp_path: Path) -> None:
    # Renaming or adding a live state changes LIVE_STATES (one line); this test then asks for
    # the migration that recreates jobs_unique_live over the new set.
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    (ddl,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_unique_live'"
                          ).fetchone()
    conn.close()
    states = re.search(r"status IN \(([^)]*)\)", ddl)
    assert states is not None
    assert states.group(1) == ", ".join(f"'{state}'" for state in LIVE_STATES)


def test_fingerprint_reads_params_as_canonical_json() -> None:
    assert fingerprint("t", {"a": 1, "b": [1, "é"]}) == fingerprint("t", {"b": [1, "é"], "a": 1})
    assert fingerprint("t", {"a": 1}) != fingerprint("u", {"a": 1})
    assert fingerprint("t", {"a": 1}) != fingerprint("t", {"a": "1"})


def test_a_success_answers_the_same_params_within_its_ttl(tmp_path: Path,
                                                          backend: Backend) -> None:
    async def body(store: Store) -> None:
        first, reused = await store.submit_once(new(cache_ttl=60))
        assert reused is None and first.cache_ttl == 60
        # Not succeeded yet: no cached result, so a second job (unique is another option).
        second, reused = await store.submit_once(new(cache_ttl=60))
        assert reused is None and second.id != first.id
        await run_to_success(store)
        hit, reused = await store.submit_once(new({"course": "CS101"}, cache_ttl=60))
        assert reused is Reused.CACHED and hit.id == second.id  # the newest success
        # Another tenant never sees this tenant's results.
        theirs, reused = await store.submit_once(new(tenant="b", cache_ttl=60))
        assert reused is None and theirs.tenant == "b"
        # Other params miss.
        assert (await store.submit_once(new({"course": "CS102"}, cache_ttl=60)))[1] is None
        # bypass_cache runs anew; once it succeeded it is the cached result.
        fresh, reused = await store.submit_once(new(cache_ttl=60, bypass_cache=True))
        assert reused is None and fresh.bypass_cache
        await run_to_success(store)
        hit, reused = await store.submit_once(new(cache_ttl=60))
        assert reused is Reused.CACHED and hit.id == fresh.id
        # Past its ttl, a success answers nothing.
        done = await store.get("default", fresh.id)
        assert done is not None and done.finished_at is not None
        finished_at = done.finished_at
        wait_until(lambda: time.time() > finished_at + 0.05, 5, 0.01,
                   message="the cached result to be older than its ttl")
        late, reused = await store.submit_once(new(cache_ttl=0.05))
        assert reused is None and late.id not in {first.id, second.id, fresh.id}

    run(tmp_path / "q.db", body, backend)


def test_a_unique_job_has_one_live_twin_per_tenant(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        first, reused = await store.submit_once(new(unique=True))
        assert reused is None and first.unique
        again, reused = await store.submit_once(new({"course": "CS101"}, unique=True))
        assert reused is Reused.UNIQUE and again.id == first.id
        (running,) = await store.claim("pool", 1, 30)  # running is live too
        assert (await store.submit_once(new(unique=True)))[0].id == first.id
        # Another tenant, and a plain submit, make jobs of their own.
        assert (await store.submit_once(new(tenant="b", unique=True)))[1] is None
        assert (await store.submit_once(new(cache_ttl=5)))[1] is None
        # Ending the job frees its place.
        await store.finish([Outcome(running.id, running.token, Ending.CANCELLED)], 3)
        second, reused = await store.submit_once(new(unique=True))
        assert reused is None and second.id != first.id
        # A retry would make two live twins: the first to be live keeps its place.
        cancelled, retried = await store.retry("default", first.id)
        assert not retried and cancelled is not None and cancelled.status == "cancelled"
        await store.cancel("default", second.id)  # queued: cancelled at once
        _, retried = await store.retry("default", first.id)
        assert retried

    run(tmp_path / "q.db", body, backend)


def test_retrying_the_dead_requeues_one_of_each_unique_twin_set(tmp_path: Path,
                                                               backend: Backend) -> None:
    async def body(store: Store) -> None:
        for _ in range(3):
            job, _ = await store.submit_once(new(unique=True))
            claims = await store.claim("pool", 1, 30)
            await store.finish([Outcome(claims[0].id, claims[0].token, Ending.FAILED,
                                        error="boom")], max_crashes=3)
            dead = await store.get("default", job.id)
            assert dead is not None and dead.status == "dead"
        await store.submit(new({"plain": True}))
        plain = await store.claim("pool", 1, 30)
        await store.finish([Outcome(plain[0].id, plain[0].token, Ending.FAILED)], 3)
        assert await store.retry_dead("default") == 2  # one of the three twins, and the plain
        assert (await store.counts())["dead"] == 2

    run(tmp_path / "q.db", body, backend)


def test_concurrent_unique_submits_from_two_connections_make_one_job(
        tmp_path: Path, backend: Backend) -> None:
    async def main() -> None:
        stores = [await backend.open(tmp_path / "q.db") for _ in range(2)]
        try:
            answers = await asyncio.gather(*(stores[i % 2].submit_once(new(unique=True))
                                             for i in range(10)))
            assert [reused for _, reused in answers].count(None) == 1
            assert len({job.id for job, _ in answers}) == 1
            assert (await stores[0].counts())["queued"] == 1
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_a_used_key_answers_before_the_cache(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        first, _ = await store.submit_once(new(cache_ttl=60, key="k"))
        await run_to_success(store)
        again, reused = await store.submit_once(new(cache_ttl=60, key="k"))
        assert (reused, again.id) == (Reused.IDEMPOTENT, first.id)
        hit, reused = await store.submit_once(new(cache_ttl=60, key="other"))
        assert (reused, hit.id) == (Reused.CACHED, first.id)

    run(tmp_path / "q.db", body, backend)


def test_a_unique_job_waiting_to_retry_is_still_the_answer(tmp_path: Path,
                                                           backend: Backend) -> None:
    async def body(store: Store) -> None:
        job, _ = await store.submit_once(NewJob(task="echo", params={}, queue="default",
                                                priority=0, max_attempts=2, unique=True))
        (claim,) = await store.claim("pool", 1, 30)
        await store.finish([Outcome(claim.id, claim.token, Ending.FAILED, error="boom",
                                    retry_at=time.time() + 60)], max_crashes=3)
        waiting = await store.get("default", job.id)
        assert waiting is not None and waiting.status == "retrying"
        twin, reused = await store.submit_once(NewJob(task="echo", params={}, queue="default",
                                                      priority=0, max_attempts=2,
                                                      unique=True))
        assert (reused, twin.id) == (Reused.UNIQUE, job.id)

    run(tmp_path / "q.db", body, backend)
