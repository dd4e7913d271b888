"""Leases on every backend: what renews them, and what an expired one does (across boxes,
a lease that expires does the work that a PID does on one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scholarsource.errors import StoreUnavailable
from scholarsource.store.base import Artifact, Ending, JobState, Outcome, Store
from tests.store.backends import Backend
from tests.store.test_sqlite import job, run


def test_an_expired_lease_requeues_its_job_as_a_crash(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=5), job(attempts=5)])
        (lost,) = await store.claim("box-a", 1, 30)
        (kept,) = await store.claim("box-b", 1, 30)
        # box-a stops renewing: its lease runs out; box-b's is renewed and holds.
        await backend.query(store, f"UPDATE jobs SET lease_until = 1 WHERE id = '{lost.id}'")
        await store.renew("box-b", [(kept.id, kept.token)], 30)
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
        (a,) = await store.claim("box-a", 1, 30)
        (b,) = await store.claim("box-b", 1, 30)
        await backend.query(store, "UPDATE jobs SET lease_until = 1")  # both run out ...
        await store.renew("box-a", [(a.id, a.token)], 3600)  # ... but box-a is alive
        await store.renew("box-a", [(b.id, b.token)], 3600)  # and cannot renew box-b's
        assert await store.recover("box-c", max_crashes=3) == 1
        assert (await store.counts())["running"] == 1

    run(tmp_path / "q.db", body, backend)


def test_renew_extends_only_the_attempts_the_slots_hold(tmp_path: Path,
                                                         backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=3) for _ in range(3)])
        held, orphan, stale = await store.claim("box-a", 3, 30)
        await backend.query(store, "UPDATE jobs SET lease_until = 1")  # time passes
        # The slots hold `held`; `orphan` was claimed for no slot, and `stale` names an
        # attempt by a token that is not its own.
        await store.renew("box-a", [(held.id, held.token), (stale.id, stale.token + 1)], 30)
        # The pool's own sweep re-queues its own jobs whose lease ran out, uncharged: it
        # renews what its slots run, so it never started them (another box's are charged:
        # test_an_expired_lease_requeues_its_job_as_a_crash).
        assert await store.recover("box-a", max_crashes=1) == 2
        for lost in (orphan, stale):
            after = await store.get("default", lost.id)
            assert after is not None
            assert (after.status, after.crashes, after.error_code) == (
                JobState.QUEUED, 0, "lease_expired")
            assert after.error == "interrupted: its pool claimed it but never started it"
            assert [h["outcome"] for h in after.attempts_history] == ["interrupted"]
        kept = await store.get("default", held.id)
        assert kept is not None and kept.status is JobState.RUNNING and kept.crashes == 0
        await store.renew("box-a", [], 30)  # nothing held: nothing to write

    run(tmp_path / "q.db", body, backend)


def test_a_claim_whose_parent_read_fails_is_not_kept_alive(
        tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # The claim commits, then reading its parents' artifacts fails: the caller never gets
    # the claim, so no slot holds the job. Renewing the slots' attempts leaves it to expire.
    async def body(store: Store) -> None:
        parent = await store.submit(job())
        (claimed,) = await store.claim("box-a", 1, 30)
        await store.finish([Outcome(claimed.id, claimed.token, Ending.SUCCEEDED,
                                    result_json='"p"')], max_crashes=3)
        (child,) = await store.submit_many([dataclasses.replace(job(attempts=3),
                                                               depends_on=(parent.id,))])

        async def unavailable(job_ids: list[str]) -> dict[str, list[Artifact]]:
            raise StoreUnavailable("connection lost")

        with monkeypatch.context() as patch:
            patch.setattr(store, "artifacts_of", unavailable)
            with pytest.raises(StoreUnavailable):
                await store.claim("box-a", 1, 30)
        stuck = await store.get("default", child.id)
        assert stuck is not None and stuck.status is JobState.RUNNING
        await backend.query(store, "UPDATE jobs SET lease_until = 1")  # time passes
        await store.renew("box-a", [], 30)  # the pool's slots hold nothing
        assert await store.recover("box-a", max_crashes=3) == 1
        (again,) = await store.claim("box-a", 1, 30)
        assert again.id == child.id and again.crashes == 0
        assert again.parents_json is not None and parent.id in again.parents_json

    run(tmp_path / "q.db", body, backend)
