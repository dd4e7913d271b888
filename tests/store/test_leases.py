"""Leases on every backend: what renews them, and what an expired one does (across boxes,
a lease that expires does the work that a PID does on one)."""

from __future__ import annotations

from pathlib import Path

from scholarsource.store.base import JobState, Store
from tests.store.backends import Backend
from tests.store.test_sqlite import job, run


def test_an_expired_lease_requeues_its_job_as_a_crash(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=5), job(attempts=5)])
        (lost,) = await store.claim("box-a", 1, 30)
        (kept,) = await store.claim("box-b", 1, 30)
        # box-a stops renewing: its lease runs out; box-b's is renewed and holds.
        await backend.query(store, f"UPDATE jobs SET lease_until = 1 WHERE id = '{lost.id}'")
        await store.renew("box-b", 30)
        assert await store.recover("box-b", max_crashes=3) == 1
        after = await store.get("default", lost.id)
        assert after is not None
        assert (after.status, after.crashes, after.error_code) == (
            JobState.QUEUED, 1, "lease_expired")
        assert [h["outcome"] for h in after.attempts_history] == ["interrupted"]
        running = await store.get("default", kept.id)
        assert running is not None and running.status is JobState.RUNNING
        # The re-queued job runs again on another box, with a new token.
        (again,) = await store.claim("box-b", 1, 30)
        assert again.id == lost.id and again.token != lost.token and again.crashes == 1

    run(tmp_path / "q.db", body, backend)


def test_a_lease_that_keeps_expiring_ends_dead(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        submitted = await store.submit(job(attempts=5))
        for _ in range(2):
            await store.claim("box-a", 1, 30)
            await backend.query(store, "UPDATE jobs SET lease_until = 1")
            assert await store.recover("box-b", max_crashes=2) == 1
        dead = await store.get("default", submitted.id)
        assert dead is not None
        assert (dead.status, dead.crashes, dead.finished_at is not None) == (
            JobState.DEAD, 2, True)

    run(tmp_path / "q.db", body, backend)


def test_renew_extends_only_the_owners_leases(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(), job()])
        await store.claim("box-a", 1, 30)
        await store.claim("box-b", 1, 30)
        await backend.query(store, "UPDATE jobs SET lease_until = 1")  # both run out ...
        await store.renew("box-a", 3600)  # ... but box-a is alive and renews
        assert await store.recover("box-c", max_crashes=3) == 1
        assert (await store.counts())["running"] == 1

    run(tmp_path / "q.db", body, backend)
