"""Schedules in the store on every backend: one job per fire whoever fires it, the cursor,
and pauses that skip what they missed."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from scholarsource.store.base import JobState, NewJob, Store
from tests.store.backends import Backend
from tests.store.test_sqlite import job, run

NOON = 1_700_000_000.0


def fire_job(at: float) -> NewJob:
    return dataclasses.replace(job("report"), schedule="nightly", scheduled_for=at)


def test_a_fire_makes_one_job_and_moves_the_cursor(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        first = await store.fire(fire_job(NOON), "nightly", NOON)
        assert first is not None and first.schedule == "nightly"
        assert await store.fire(fire_job(NOON), "nightly", NOON) is None  # the same fire
        # A manual trigger at the same instant is no fire of the schedule: it runs too.
        triggered = dataclasses.replace(fire_job(NOON), triggered=True)
        assert await store.fire(triggered, "nightly", NOON) is not None
        assert await store.fire(None, "nightly", NOON + 60) is None  # a skipped fire
        state = (await store.schedule_states("default", ["nightly", "unseen"]))
        assert (state["nightly"].cursor, state["nightly"].paused) == (NOON + 60, False)
        assert state["nightly"].last_status is JobState.QUEUED
        assert (state["unseen"].cursor, state["unseen"].last_job_id) == (None, None)
        # The cursor never goes back.
        await store.fire(None, "nightly", NOON)
        assert (await store.schedule_states("default", ["nightly"]))["nightly"].cursor \
            == NOON + 60
        listed, _ = await store.list_jobs("default", schedule="nightly")
        assert len(listed) == 2

    run(tmp_path / "q.db", body, backend)


def test_two_stores_firing_at_once_make_one_job_per_fire(tmp_path: Path,
                                                          backend: Backend) -> None:
    async def main() -> None:
        stores = [await backend.open(tmp_path / "q.db") for _ in range(2)]
        try:
            async def fire_all(store: Store) -> list[bool]:
                # One caller at a time per store (a pool's connection); the stores race.
                return [await store.fire(fire_job(NOON + step), "nightly", NOON + step)
                        is not None for step in range(5)]

            fired = await asyncio.gather(*(fire_all(store) for store in stores))
            assert sum(fired[0]) + sum(fired[1]) == 5
            assert (await stores[0].counts())["queued"] == 5
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_a_paused_schedule_fires_nothing_and_resumes_from_now(tmp_path: Path,
                                                              backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.fire(fire_job(NOON), "nightly", NOON)
        await store.set_paused("nightly", True, NOON + 1)
        assert await store.fire(fire_job(NOON + 60), "nightly", NOON + 60) is None
        state = (await store.schedule_states("default", ["nightly"]))["nightly"]
        assert state.paused and state.cursor == NOON + 60
        await store.set_paused("nightly", False, NOON + 600)  # what it missed stays missed
        state = (await store.schedule_states("default", ["nightly"]))["nightly"]
        assert not state.paused and state.cursor == NOON + 600
        assert await store.fire(fire_job(NOON + 660), "nightly", NOON + 660) is not None

    run(tmp_path / "q.db", body, backend)
