"""Recovery after a pool's death: who is charged a crash."""

from __future__ import annotations

from pathlib import Path

from scholarsource.store.base import Store
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
