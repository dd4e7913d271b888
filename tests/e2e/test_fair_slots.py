"""Fair slots among tenants through a real `scholarsource serve` (issue 13): a tenant that
queues a few jobs after another's long backlog runs them at once, not after the backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from scholarsource.config import load_config
from scholarsource.store.base import Job, JobState, NewJob, Store, Wake
from scholarsource.store.factory import open_store
from tests.conftest import Server
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

T = TypeVar("T")
BACKLOG, FEW = 40, 4


def _store_call(server: Server, call: Callable[[Store], Awaitable[T]]) -> T:
    """`call` on the server's own store (SQLite file or PostgreSQL database): jobs of a
    tenant other than the default one, without API keys."""
    database = {"database": server.database} if server.database else {}
    config = load_config(env={}, overrides={"data_dir": str(server.data_dir), **database})

    async def body() -> T:
        store = await open_store(config, "cli")
        try:
            return await call(store)
        finally:
            await store.close()

    return asyncio.run(body())


def _sleeps(tenant: str, count: int) -> list[NewJob]:
    return [NewJob("sleep", {"seconds": 0.05}, "default", 0, 1, tenant=tenant)] * count


async def _queue_backlog_then_few(store: Store) -> list[str]:
    await store.submit_many(_sleeps("big", BACKLOG))
    few = await store.submit_many(_sleeps("small", FEW))
    store.wake(Wake.SUBMITTED)
    return [job.id for job in few]


@pytest.mark.both_backends
def test_a_small_tenant_runs_before_a_big_tenants_backlog_drains(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    config = tmp_path / "tenants.toml"
    config.write_text("[tenants.small]\nweight = 2\n")
    server = serve(slots=1, args=("--config", str(config)))
    few = _store_call(server, _queue_backlog_then_few)

    async def small_jobs(store: Store) -> list[Job]:
        return [job for job_id in few if (job := await store.get("small", job_id))]

    def all_done() -> list[Job]:
        jobs = _store_call(server, small_jobs)
        return jobs if all(job.status is JobState.SUCCEEDED for job in jobs) else []

    done = wait_until(all_done, 30, 0.1, message="the small tenant's jobs to succeed")
    last_start = max(job.started_at or 0.0 for job in done)
    big, _ = _store_call(server, lambda store: store.list_jobs("big", limit=BACKLOG))
    started_before = [job for job in big if job.started_at and job.started_at < last_start]
    # One slot: in turn order, big's first job (it queued first), then small's at twice its
    # weight. Without fair slots all 40 of big's would run first.
    assert len(big) == BACKLOG and len(started_before) <= 3, len(started_before)
