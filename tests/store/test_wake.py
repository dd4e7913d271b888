"""Wake-ups behind the store: what one store's wake() sends, the pool's listen() receives."""

from __future__ import annotations

import asyncio
import select
from pathlib import Path

import pytest

from scholarsource.errors import StoreError
from scholarsource.store import schema, wakeup
from scholarsource.store.base import Wake
from scholarsource.store.sqlite import SqliteStore


def test_a_wake_reaches_the_listener_of_the_same_data_dir_only(tmp_path: Path) -> None:
    here, there = tmp_path / "a" / "q.db", tmp_path / "b" / "q.db"
    for db in (here, there):
        schema.migrate(db)

    async def body() -> None:
        api, pool, other = (await SqliteStore.open(here), await SqliteStore.open(here, inline=True),
                            await SqliteStore.open(there, inline=True))
        source, elsewhere = await pool.listen(), await other.listen()
        try:
            assert source.drain() == set()
            api.wake(Wake.SUBMITTED)
            api.wake(Wake.CANCELLED)
            api.wake(Wake.CANCELLED)
            assert select.select([source.fileno()], [], [], 5)[0]  # readable: a fd to watch
            assert source.drain() == {Wake.SUBMITTED, Wake.CANCELLED}
            assert source.drain() == set() and elsewhere.drain() == set()
        finally:
            source.close()
            elsewhere.close()
            for store in (api, pool, other):
                await store.close()

    asyncio.run(body())


def test_a_wake_without_a_listening_pool_is_harmless(tmp_path: Path) -> None:
    schema.migrate(tmp_path / "q.db")

    async def body() -> None:
        store = await SqliteStore.open(tmp_path / "q.db")
        store.wake(Wake.SCHEDULED)  # nobody listens: dropped, no error
        await store.close()

    asyncio.run(body())


def test_a_second_listener_on_one_data_dir_is_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wakeup, "_BIND_RETRY_SECONDS", 0.2)
    schema.migrate(tmp_path / "q.db")

    async def body() -> None:
        first = await SqliteStore.open(tmp_path / "q.db", inline=True)
        source = await first.listen()
        try:
            with pytest.raises(StoreError, match="another pool is serving"):
                await first.listen()
        finally:
            source.close()
            await first.close()

    asyncio.run(body())
