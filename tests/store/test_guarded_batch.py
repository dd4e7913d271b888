"""SQLite's quick path for a batch: one guarded INSERT padded up to one of two sizes, so a
batch holds the write lock for one statement and the connection caches two statements more
whatever the batch sizes; the guard still refuses the whole batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scholarsource.store import schema
from scholarsource.store.admission import Guard
from scholarsource.store.base import NewJob
from scholarsource.store.rows import new_jobs
from scholarsource.store.sqlite import (
    GUARDED_SIZES,
    SUBMIT_ROWS,
    SqliteStore,
    guarded_size,
    submit_guarded_sql,
)


def test_every_count_of_jobs_is_padded_to_one_of_eleven_statement_sizes() -> None:
    # Each size is a statement in a connection's cache (~0.7 MB prepared at 256 rows).
    assert [guarded_size(n) for n in (1, 2, 3, 37, 64, 65, SUBMIT_ROWS)] == [
        1, 2, 4, 64, 64, 128, SUBMIT_ROWS]
    assert len({guarded_size(n) for n in range(1, GUARDED_SIZES[-1] + 1)}) == 11
    assert [guarded_size(n) for n in (SUBMIT_ROWS + 1, 512, 513, 1000, 1024)] == [
        512, 512, 1024, 1024, 1024]
    assert GUARDED_SIZES[-1] * 30 + 4 <= 32766  # SQLite's limit on bound values


@pytest.mark.parametrize("inline", [True, False])
def test_a_padded_guarded_insert_writes_exactly_its_jobs_or_none(tmp_path: Path,
                                                                 inline: bool) -> None:
    async def go() -> None:
        schema.migrate(tmp_path / "q.db")
        store = await SqliteStore.open(tmp_path / "q.db", inline=inline)
        written = 0
        submit_guarded_sql.cache_clear()
        for n in (300, 1000, 1024):
            news = [NewJob("noop", {"n": i}, "default", 0, 1) for i in range(n)]
            jobs = new_jobs(news)
            assert await store._insert_guarded(news, jobs, Guard(["default"], [], n, None))
            written += n
            assert await store.live_counts() == {"default": written}
            got = await store.get("default", jobs[-1].id)
            assert got is not None and got.params == {"n": n - 1}
        # Two statements, whatever the batch sizes past SUBMIT_ROWS.
        assert submit_guarded_sql.cache_info().currsize == 2
        # Over the server's cap: nothing of the batch goes in.
        news = [NewJob("noop", {}, "default", 0, 1)] * 700
        full = Guard(["default"], [], 700, written + 699)
        assert not await store._insert_guarded(news, new_jobs(news), full)
        assert await store.live_counts() == {"default": written}
        await store.close()

    asyncio.run(go())
