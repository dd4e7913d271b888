"""Store.batch: the pool's results and its next claim written as one batch (on SQLite one
transaction, so one commit per dispatcher turn)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scholarsource.store.base import Store
from scholarsource.store.sqlite import FINISH_ROWS
from tests.store.backends import Backend
from tests.store.test_sqlite import job, ok, run


def test_results_and_a_claim_in_one_batch_are_all_written(tmp_path: Path,
                                                          backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job() for _ in range(FINISH_ROWS + 5)])
        first = await store.claim("p", FINISH_ROWS + 3, 30)
        async with store.batch():
            # More results than one SQLite statement takes: a transaction inside the batch.
            states = await store.finish([ok(c.id, c.token) for c in first], max_crashes=3)
            second = await store.claim("p", 2, 30)
            # The batch's own reads see its writes.
            assert (await store.counts())["running"] == 2
        assert set(states.values()) == {"succeeded"} and len(states) == FINISH_ROWS + 3
        assert len(second) == 2 and not {c.id for c in second} & {c.id for c in first}
        counts = await store.counts()
        assert (counts["succeeded"], counts["running"]) == (FINISH_ROWS + 3, 2)

    run(tmp_path / "q.db", body, backend)


def test_on_sqlite_a_batch_that_raises_writes_nothing(tmp_path: Path, inline: bool) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job() for _ in range(3)])
        (running,) = await store.claim("p", 1, 30)
        with pytest.raises(RuntimeError):
            async with store.batch():
                await store.finish([ok(running.id, running.token)], max_crashes=3)
                await store.claim("p", 2, 30)
                raise RuntimeError("the turn went wrong")
        counts = await store.counts()
        assert (counts["queued"], counts["running"], counts["succeeded"]) == (2, 1, 0)
        # The same result, written again, counts.
        assert await store.finish([ok(running.id, running.token)], max_crashes=3) == {
            running.id: "succeeded"}

    run(tmp_path / "q.db", body, inline=inline)


def test_on_sqlite_another_task_waits_for_the_batch(tmp_path: Path, inline: bool) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job() for _ in range(2)])
        seen: list[int] = []

        async def count_running() -> None:
            seen.append((await store.counts())["running"])

        async with store.batch():
            await store.claim("p", 1, 30)
            other = asyncio.ensure_future(count_running())
            for _ in range(3):  # turns of the loop: the other task starts its statement
                await asyncio.sleep(0)
            assert not other.done()  # had it run now, it would have seen one claim
            await store.claim("p", 1, 30)
        await other
        assert seen == [2]  # it ran after the commit, and saw both claims

    run(tmp_path / "q.db", body, inline=inline)
