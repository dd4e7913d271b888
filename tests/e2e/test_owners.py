"""Pools keyed by owner (host/box/boot) on a real server: at start a pool takes back at once
what its own box's dead pool held, and another box's job only once its lease has expired."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from scholarsource.store import schema
from scholarsource.store.base import NewJob, PoolInfo
from scholarsource.store.owner import box_of
from scholarsource.store.sqlite import SqliteStore
from tests.e2e.jobs_api import wait_finished
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

OTHER_BOX = "otherhost/0123456789ab/"


def _store_call(db: Path, call: Any) -> Any:
    async def body() -> Any:
        store = await SqliteStore.open(db, inline=True)
        try:
            return await call(store)
        finally:
            await store.close()

    return asyncio.run(body())


def test_a_start_requeues_its_own_boxs_jobs_at_once_and_another_boxs_after_its_lease(
        serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = data / "scholarsource.db"
    schema.migrate(db)

    async def seed(store: SqliteStore) -> tuple[str, str]:
        mine, theirs = await store.submit_many(
            [NewJob(task="noop", params={}, queue="default", priority=0, max_attempts=3)
             for _ in range(2)])
        # This box's previous pool died holding one; a live box elsewhere holds the other.
        assert [c.id for c in await store.claim(box_of(str(data)) + "deadboot", 1, 3600)] \
            == [mine.id]
        assert [c.id for c in await store.claim(OTHER_BOX + "liveboot", 1, 3600)] \
            == [theirs.id]
        return mine.id, theirs.id

    mine, theirs = _store_call(db, seed)
    # Short leases: the pool's expired-lease sweep runs every lease_seconds / 3.
    server = serve(slots=1, env={"SCHOLARSOURCE_LEASE_SECONDS": "1.5"})
    client = server.client()

    rescued = wait_finished(client, mine)
    assert rescued["status"] == "succeeded" and rescued["attempts"] == 2
    assert rescued["attempts_history"][0]["error_code"] == "pool_died"
    # Three sweeps later (a heartbeat follows each turn's renew and sweep), the other box's
    # live lease still holds its job.
    def beat_at() -> float:
        stats = client.get("/api/stats").json()
        return float(stats["time"] - stats["pool"]["heartbeat_age"])

    wait_until(lambda: beat_at() > rescued["finished_at"] + 1.5, 10,
               message="three sweeps after the rescue")
    held = client.get(f"/api/jobs/{theirs}").json()
    assert (held["status"], held["attempts"]) == ("running", 1)

    # Both pools show while both heartbeat.
    _store_call(db, lambda store: store.heartbeat(PoolInfo(
        pid=1, slots=[2], slot_count=4, busy=1, heartbeat_at=time.time(),
        owner=OTHER_BOX + "liveboot")))
    for body in (client.get("/api/stats").json(), server.health()):
        owners = {row["owner"]: row for row in body["pools"]}
        assert owners[OTHER_BOX + "liveboot"]["live"] and \
            owners[OTHER_BOX + "liveboot"]["slots"] == 4
        (own,) = [row for owner, row in owners.items() if owner.startswith(box_of(str(data)))]
        assert own["live"] and own["pid"] == body["pool"]["pid"]

    # That box dies: its lease runs out, and this box's sweep takes the job.
    conn = sqlite3.connect(db, timeout=10)
    with conn:
        conn.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", (time.time() - 1, theirs))
    conn.close()
    taken = wait_finished(client, theirs)
    assert taken["status"] == "succeeded" and taken["attempts"] == 2
    assert taken["attempts_history"][0]["error_code"] == "lease_expired"
