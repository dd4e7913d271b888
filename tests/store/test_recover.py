"""Recovery after a pool's death: who is charged a crash."""

from __future__ import annotations

from pathlib import Path

from scholarsource.pool.handback import Handback
from scholarsource.store.base import Job, Store
from scholarsource.store.rules import SHUTDOWN
from tests.store.backends import Backend
from tests.store.test_sqlite import job, run


def test_a_named_culprit_alone_is_charged_and_its_neighbours_are_spared(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=5), job(attempts=5)])
        first, second = await store.claim("dead-pool", 2, 30)
        for death in range(3):  # the first job takes the pool down three times
            if death:
                first, second = sorted(await store.claim("dead-pool", 2, 30),
                                       key=lambda c: c.id != first.id)
            assert await store.recover("next-pool", box="", max_crashes=3,
                                       culprit=(first.id, first.token)) == 2
        culprit, neighbour = first, second
        dead = await store.get("default", culprit.id)
        assert dead is not None
        assert (dead.status, dead.crashes, dead.failures, dead.error_code) == (
            "dead", 3, 0, "pool_died")
        assert [h["outcome"] for h in dead.attempts_history] == ["crashed"] * 3
        spared = await store.get("default", neighbour.id)
        assert spared is not None
        assert (spared.status, spared.crashes, spared.failures) == ("queued", 0, 0)
        assert [h["outcome"] for h in spared.attempts_history] == ["interrupted"] * 3

    run(tmp_path / "q.db", body, backend)


def test_without_a_culprit_every_running_job_is_charged(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=5), job(attempts=5)])
        claims = await store.claim("dead-pool", 2, 30)
        assert await store.recover("next-pool", box="", max_crashes=3) == 2
        for claim in claims:
            after = await store.get("default", claim.id)
            assert after is not None and (after.status, after.crashes) == ("queued", 1)

    run(tmp_path / "q.db", body, backend)


async def _ended(store: Store, job_id: str) -> tuple[str, int, str | None, str | None, str]:
    """(status, crashes, error_code, error, last outcome) of a job."""
    got: Job | None = await store.get("default", job_id)
    assert got is not None
    return (got.status, got.crashes, got.error_code, got.error,
            got.attempts_history[-1]["outcome"])


def test_what_a_stop_handed_back_goes_back_uncharged_and_the_rest_as_after_a_death(
        tmp_path: Path, backend: Backend) -> None:
    # The stopping pool listed two attempts in pool.handback, then was killed before it
    # could re-queue them. One of the two ran again since (another pool re-queued it and
    # this one claimed it anew): the list names its old token, which changes nothing.
    handback = Handback(tmp_path / "pool.handback")

    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=5) for _ in range(3)])
        handed, rerun, beside = await store.claim("dead-pool", 3, 30)
        await store.requeue([(rerun.id, rerun.token)], SHUTDOWN)
        (again,) = await store.claim("dead-pool", 1, 30)
        assert again.id == rerun.id and again.token != rerun.token
        handback.keep([(handed.id, handed.token), (rerun.id, rerun.token)])
        assert await handback.requeue(store, None) == 1
        assert not (tmp_path / "pool.handback").exists()
        assert await store.recover("next-pool", box="", max_crashes=3) == 2
        assert await _ended(store, handed.id) == (
            "queued", 0, "interrupted", SHUTDOWN, "interrupted")
        for charged in (rerun.id, beside.id):  # no culprit was named: each counts a crash
            assert (await _ended(store, charged))[:3] == ("queued", 1, "pool_died")

    run(tmp_path / "q.db", body, backend)


def test_a_culprit_is_charged_even_when_its_stop_handed_it_back(
        tmp_path: Path, backend: Backend) -> None:
    # The list is written as the stop begins; the slots run on during the grace, and the
    # pool died taking in this one's data: that is the culprit rule's case, not a stop's.
    handback = Handback(tmp_path / "pool.handback")

    async def body(store: Store) -> None:
        await store.submit_many([job(attempts=5), job(attempts=5)])
        culprit, other = await store.claim("dead-pool", 2, 30)
        pairs = [(culprit.id, culprit.token), (other.id, other.token)]
        handback.keep(pairs)
        assert await handback.requeue(store, pairs[0]) == 1
        assert await store.recover("next-pool", box="", max_crashes=3, culprit=pairs[0]) == 1
        assert (await _ended(store, culprit.id))[:3] == ("queued", 1, "pool_died")
        assert await _ended(store, other.id) == (
            "queued", 0, "interrupted", SHUTDOWN, "interrupted")

    run(tmp_path / "q.db", body, backend)
