"""Owners: a starting pool takes back at once what its own box's dead pools held, and another
box's jobs only once their lease has expired."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import PoolInfo
from scholarsource.store.owner import box_of, new_owner
from scholarsource.store.sqlite import SqliteStore
from tests.store.backends import Backend
from tests.store.test_sqlite import job, run

HERE = "box-a/0123456789ab/"
THERE = "box-b/ba9876543210/"


def test_owner_ids_are_host_box_boot(tmp_path: Path) -> None:
    box = box_of(str(tmp_path))
    first, second = new_owner(str(tmp_path)), new_owner(str(tmp_path))
    assert first.startswith(box) and second.startswith(box) and first != second
    assert box.count("/") == 2 and box.endswith("/")
    assert box_of(str(tmp_path / "other")) != box  # another data_dir is another box
    assert box_of(str(tmp_path), host="elsewhere") != box


def test_start_takes_this_boxs_jobs_at_once_and_leaves_another_boxs_live_lease(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: SqliteStore) -> None:
        mine, theirs = await store.submit_many([job(attempts=3), job(attempts=3)])
        await store.claim(HERE + "deadboot", 1, 600)
        await store.claim(THERE + "liveboot", 1, 600)
        assert await store.recover(HERE + "newboot", box=HERE, max_crashes=3) == 1
        after = {j: await store.get("default", j) for j in (mine.id, theirs.id)}
        assert after[mine.id].status == "queued"  # type: ignore[union-attr]
        assert after[mine.id].error_code == "pool_died"  # type: ignore[union-attr]
        assert after[theirs.id].status == "running"  # type: ignore[union-attr]
        # The periodic sweep leaves a live lease alone too ...
        assert await store.recover(HERE + "newboot", max_crashes=3) == 0

    run(tmp_path / "q.db", body, backend)


def test_another_boxs_job_is_taken_once_its_lease_expires(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: SqliteStore) -> None:
        theirs = await store.submit(job(attempts=3))
        await store.claim(THERE + "deadboot", 1, 0.2)
        assert await store.recover(HERE + "newboot", box=HERE, max_crashes=3) == 0
        time.sleep(0.3)
        assert await store.recover(HERE + "newboot", max_crashes=3) == 1
        after = await store.get("default", theirs.id)
        assert after is not None
        assert (after.status, after.crashes, after.error_code) == ("queued", 1,
                                                                   "lease_expired")

    run(tmp_path / "q.db", body, backend)


def test_pools_are_rows_by_owner_and_a_start_forgets_its_boxs_dead_ones(
        tmp_path: Path, backend: Backend) -> None:
    def beat(owner: str, at: float) -> PoolInfo:
        return PoolInfo(pid=1, slots=[2], slot_count=1, busy=0, heartbeat_at=at, owner=owner)

    async def body(store: SqliteStore) -> list[str]:
        now = time.time()
        for owner, at in ((HERE + "old", now - 5), (THERE + "live", now),
                          ("box-c/000000000000/gone", now - 2 * 86400)):
            await store.heartbeat(beat(owner, at))
        await store.heartbeat(beat(THERE + "live", now + 1))  # one row per owner, updated
        assert [p.owner for p in await store.pools()] == [
            THERE + "live", HERE + "old", "box-c/000000000000/gone"]
        await store.recover(HERE + "new", box=HERE, max_crashes=3)
        await store.heartbeat(beat(HERE + "new", now + 2))
        return [p.owner for p in await store.pools()]

    assert run(tmp_path / "q.db", body, backend) == [HERE + "new", THERE + "live"]


def test_jobs_running_under_pre_owner_ids_are_swept_after_the_upgrade(
        tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, migration in enumerate(schema.MIGRATIONS[:12]):
        conn.executescript(f"BEGIN;\n{migration}\nPRAGMA user_version = {number + 1};\nCOMMIT;")
    conn.execute("INSERT INTO jobs (id, tenant, task, queue, status, params, created_at, "
                 "owner, token, lease_until, attempts, max_attempts) VALUES ('j', 'default', "
                 "'noop', 'default', 'running', '{}', 0, 'a1b2c3d4e5f60718', 7, ?, 1, 3)",
                 (time.time() + 3600,))
    conn.close()

    async def body(store: SqliteStore) -> str:
        assert await store.recover(HERE + "new", box=HERE, max_crashes=3) == 0  # no box
        assert await store.recover(HERE + "new", max_crashes=3) == 1  # but no lease either
        after = await store.get("default", "j")
        assert after is not None
        return after.status

    assert run(db, body, inline=True) == "queued"  # run() migrates to V13 first
