"""The store queries behind /api/stats and the dashboard: throughput history, the pool's
per-slot rows, and the jobs list's bounded text search."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import PoolInfo, Store
from scholarsource.store.sqlite import FINISHED_HISTORY
from tests.store.backends import Backend
from tests.store.test_cache_unique import run_to_success
from tests.store.test_sqlite import job, query_plan, run


def test_the_history_reads_the_finished_at_index_alone(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    plan = query_plan(conn, FINISHED_HISTORY, {"tenant": "t", "since": 0.0, "step": 10.0})
    conn.close()
    assert "COVERING INDEX jobs_finished" in plan, plan


def test_the_history_counts_finished_jobs_per_bucket(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> tuple[list[int], list[int]]:
        await store.submit_many([job() for _ in range(5)] + [job(tenant="other")])
        await run_to_success(store)  # both tenants' jobs: a claim is one tenant's turn
        now = time.time()
        return (await store.finished_history("default", now - 900, 10.0, 90),
                await store.finished_history("default", now + 60, 10.0, 3))

    history, future = run(tmp_path / "q.db", body, backend)
    assert len(history) == 90 and sum(history) == 5 and sum(history[-2:]) == 5
    assert future == [0, 0, 0]  # nothing finished after `since`


def test_the_heartbeat_keeps_each_slots_row(tmp_path: Path, backend: Backend) -> None:
    rows = [{"slot": 0, "pid": 11, "job_id": "j1", "task": "sleep", "started_at": 1.5,
             "rss": 2048, "cpu_seconds": 0.25},
            {"slot": 1, "pid": 12, "job_id": None, "task": None, "started_at": None,
             "rss": None, "cpu_seconds": None}]

    async def body(store: Store) -> list[PoolInfo]:
        await store.heartbeat(PoolInfo(pid=10, slots=[11, 12], slot_count=2, busy=1,
                                       heartbeat_at=time.time(), slot_rows=rows))
        return await store.pools()

    (info,) = run(tmp_path / "q.db", body, backend)
    assert info.slot_rows == rows


def test_a_search_reads_a_bounded_window_and_pages_past_it(tmp_path: Path,
                                                           backend: Backend) -> None:
    async def body(store: Store) -> tuple[str, list[tuple[list[str], bool]]]:
        needle = await store.submit(job(task="needle"))
        await store.submit_many([job() for _ in range(5)])
        pages = [await store.list_jobs("default", search="NEEDLE", search_scan=3)]
        while pages[-1][1] is not None:
            pages.append(await store.list_jobs("default", search="NEEDLE", search_scan=3,
                                               cursor=pages[-1][1]))
        return needle.id, [([j.id for j in jobs], cursor is None) for jobs, cursor in pages]

    needle, pages = run(tmp_path / "q.db", body, backend)
    # 6 jobs, 3 read per page: the newest 3 hold no match, the oldest 3 hold the needle, and
    # the search ends there (no empty page after it).
    assert pages == [([], False), ([needle], True)]


def test_an_admins_view_lists_every_tenants_jobs_in_bounded_windows(tmp_path: Path,
                                                                     backend: Backend) -> None:
    async def body(store: Store) -> None:
        ids = [(await store.submit(job(tenant=tenant, task=task))).id
               for tenant, task in [("a", "echo"), ("b", "noop"), ("a", "noop"), ("b", "echo"),
                                    ("c", "echo")]]
        everyone, cursor = await store.list_jobs(None, limit=10)
        assert [j.id for j in everyone] == ids[::-1] and cursor is None
        assert [j.tenant for j in everyone] == ["c", "b", "a", "b", "a"]
        # A window of 2 rows per page: filters narrow each window, pages go on past it.
        pages, cursor = [], None
        while True:
            page, cursor = await store.list_jobs(None, task="echo", search_scan=2,
                                                 cursor=cursor)
            pages.append([j.id for j in page])
            if cursor is None:
                break
        assert pages == [[ids[4], ids[3]], [], [ids[0]]]
        found, _ = await store.list_jobs(None, search="ECH", limit=2)
        assert [j.id for j in found] == [ids[4], ids[3]]
        # By id: any tenant's job for the admin's look, only its own for a tenant.
        assert (await store.get(None, ids[1])).tenant == "b"  # type: ignore[union-attr]
        assert await store.get("a", ids[1]) is None

    run(tmp_path / "q.db", body, backend)
