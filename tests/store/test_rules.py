"""The store obeys the retry, dead and crash rules as store/rules.py states them: every
sequence of failed and crashed attempts, for several max_attempts and max_crashes, and every
lost-pool charge, leaves the job where the rule functions say."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from scholarsource.store.base import Ending, JobState
from scholarsource.store.rules import after_attempt, after_lost_pool
from scholarsource.store.sqlite import SqliteStore
from tests.store.backends import Backend
from tests.store.test_sqlite import failed, job, run

LIMITS = [(1, 1), (1, 3), (2, 2), (3, 1), (3, 2), (4, 3)]  # (max_attempts, max_crashes)


@pytest.mark.parametrize(("max_attempts", "max_crashes"), LIMITS)
def test_failures_and_crashes_follow_after_attempt(tmp_path: Path, backend: Backend,
                                                  max_attempts: int,
                                                   max_crashes: int) -> None:
    async def body(store: SqliteStore) -> int:
        checked = 0
        for endings in itertools.product((Ending.FAILED, Ending.CRASHED), repeat=4):
            submitted = await store.submit(job(attempts=max_attempts))
            for ending in endings:
                before = await store.get("default", submitted.id)
                assert before is not None
                await store.promote()  # a retrying job's retry_at is already due
                (claim,) = await store.claim("pool", 1, 30)
                states = await store.finish(
                    [failed(claim.id, claim.token, crashed=ending is Ending.CRASHED)],
                    max_crashes=max_crashes)
                assert states[claim.id] == after_attempt(
                    ending, failures=before.failures, crashes=before.crashes,
                    max_attempts=max_attempts, max_crashes=max_crashes), (endings, ending)
                checked += 1
                if states[claim.id] is JobState.DEAD:
                    break
        return checked

    assert run(tmp_path / "q.db", body, backend) >= 16


@pytest.mark.parametrize("max_crashes", [1, 2, 3])
@pytest.mark.parametrize("culprit", [None, "this", "another"])
def test_lost_pools_follow_after_lost_pool(tmp_path: Path, backend: Backend,
                                          max_crashes: int,
                                           culprit: str | None) -> None:
    async def body(store: SqliteStore) -> None:
        submitted = await store.submit(job(attempts=10))
        other = await store.submit(job(attempts=10))
        for _ in range(max_crashes):
            before = await store.get("default", submitted.id)
            assert before is not None and before.status is JobState.QUEUED
            claims = {c.id: c for c in await store.claim("dead-pool", 2, 30)}
            named = {"this": (submitted.id, claims[submitted.id].token),
                     "another": (other.id, claims[other.id].token), None: None}[culprit]
            await store.recover("next-pool", box="", max_crashes=max_crashes, culprit=named)
            after = await store.get("default", submitted.id)
            assert after is not None
            assert after.status == after_lost_pool(
                crashes=before.crashes, max_crashes=max_crashes,
                charged=culprit != "another")
            assert after.failures == 0
        # Charged every time, it is dead after max_crashes deaths; spared, never charged.
        assert (after.status, after.crashes) == ((JobState.DEAD, max_crashes)
                                                 if culprit != "another"
                                                 else (JobState.QUEUED, 0))

    run(tmp_path / "q.db", body, backend)


def test_the_other_endings() -> None:
    for ending, state in ((Ending.SUCCEEDED, JobState.SUCCEEDED),
                          (Ending.CANCELLED, JobState.CANCELLED),
                          (Ending.INTERRUPTED, JobState.QUEUED)):
        assert after_attempt(ending, failures=9, crashes=9, max_attempts=1,
                             max_crashes=1) is state
