"""Moving jobs from a SQLite store into another store (`scholarsource migrate-to`): what a
job is survives the move, a stopped server's running job comes back queued and uncharged,
and a second import copies nothing twice. Imported into every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import Carried, Imported, JobState, Reused, Store
from scholarsource.store.sqlite import SqliteStore
from tests.store.backends import Backend
from tests.store.test_sqlite import failed, job, ok, run

NOON = 1_700_000_000.0


async def stopped_server(path: Path) -> dict[str, str]:
    """A SQLite store as a server could leave it: one job in each state; returns their ids."""
    schema.migrate(path)
    source = await SqliteStore.open(path, inline=True)
    try:
        ids = {}
        for name, attempts in (("retrying", 3), ("running", 1), ("succeeded", 1)):
            ids[name] = (await source.submit(job(name, attempts=attempts))).id
            (claim,) = await source.claim("host/box/boot", 1, 30.0)
            if name == "retrying":
                await source.finish([failed(claim.id, claim.token, due_in=3600)], 3)
            elif name == "succeeded":
                await source.finish([ok(claim.id, claim.token, '{"n": 1}')], 3)
        keyed = dataclasses.replace(job("queued", priority=5, queue="slow"),
                                    idempotency_key="k-1", concurrency_key="acct",
                                    concurrency_limit=1)
        ids["queued"] = (await source.submit_once(keyed))[0].id
        delayed = dataclasses.replace(job("scheduled"), run_at=time.time() + 3600)
        ids["scheduled"] = (await source.submit(delayed)).id
        fired = await source.fire(dataclasses.replace(job("report"), schedule="nightly",
                                                      scheduled_for=NOON), "nightly", NOON)
        assert fired is not None
        ids["fired"] = fired.id
        await source.pause_queue("slow", True)
        return ids
    finally:
        await source.close()


async def export(path: Path, everything: bool) -> Carried:
    source = await SqliteStore.open(path, inline=True)
    try:
        carried, after = await source.export_rows(0, 100, everything=everything)
        assert after is None
        return carried
    finally:
        await source.close()


def test_import_keeps_each_job_and_copies_nothing_twice(tmp_path: Path,
                                                        backend: Backend) -> None:
    ids = asyncio.run(stopped_server(tmp_path / "source.db"))
    carried = asyncio.run(export(tmp_path / "source.db", everything=False))
    assert sorted(j["id"] for j in carried.jobs) == sorted(
        ids[name] for name in ("retrying", "running", "queued", "scheduled", "fired"))

    async def body(store: Store) -> None:
        assert await store.import_rows(carried) == Imported(jobs=5, events=len(carried.events),
                                                            queues=1, schedules=1)
        assert carried.events, "the jobs that changed state bring their history"
        got = {name: await store.get("default", job_id) for name, job_id in ids.items()}
        assert got["succeeded"] is None  # finished: not copied without everything
        queued, retrying, moved = got["queued"], got["retrying"], got["running"]
        assert queued and (queued.status, queued.priority, queued.queue) == (
            JobState.QUEUED, 5, "slow")
        assert (queued.concurrency_key, queued.concurrency_limit) == ("acct", 1)
        assert got["scheduled"] and got["scheduled"].status is JobState.SCHEDULED
        assert retrying and (retrying.status, retrying.attempts, retrying.failures) == (
            JobState.RETRYING, 1, 1)
        assert retrying.run_at is not None and retrying.run_at > time.time() + 3000
        assert moved and (moved.status, moved.attempts, moved.failures, moved.crashes) == (
            JobState.QUEUED, 1, 0, 0)
        assert moved.error_code == "interrupted"
        assert moved.attempts_history[-1]["outcome"] == "interrupted"
        assert got["fired"] and (got["fired"].schedule, got["fired"].scheduled_for) == (
            "nightly", NOON)
        assert [e.kind for e in await store.events("default", ids["retrying"])]
        assert await store.paused_queues() == {"slow"}
        assert (await store.schedule_states("default", ["nightly"]))["nightly"].cursor == NOON
        # The schema still holds what the ids and keys promised: the same fire and the same
        # idempotency key find the copied jobs.
        assert await store.fire(dataclasses.replace(job("report"), schedule="nightly",
                                                    scheduled_for=NOON), "nightly", NOON) is None
        again = dataclasses.replace(job("queued"), idempotency_key="k-1")
        assert await store.submit_once(again) == (queued, Reused.IDEMPOTENT)

        assert await store.import_rows(carried) == Imported(skipped=5)
        assert await store.import_rows(Carried([])) == Imported()  # an empty last batch
        everything = await export(tmp_path / "source.db", everything=True)
        assert await store.import_rows(everything) == Imported(
            jobs=1, skipped=5, events=sum(e["job_id"] == ids["succeeded"]
                                          for e in everything.events))
        done = await store.get("default", ids["succeeded"])
        assert done and (done.status, done.result) == (JobState.SUCCEEDED, {"n": 1})
        # The copied queue keeps its order: priority first, then the order of submission.
        await store.pause_queue("slow", False)
        for name in ("queued", "running", "fired"):
            (claim,) = await store.claim("other/box/boot", 1, 30.0)
            assert claim.id == ids[name]

    run(tmp_path / "target.db", body, backend)


def test_export_goes_in_batches_that_resume_where_the_last_ended(tmp_path: Path) -> None:
    ids = asyncio.run(stopped_server(tmp_path / "source.db"))

    async def body(store: Store) -> None:
        assert isinstance(store, SqliteStore)
        batches, after = [], 0
        while True:  # 5 unfinished jobs, 2 a batch: the last batch is the 5th alone
            carried, next_after = await store.export_rows(after, 2, everything=False)
            batches.append(carried)
            if next_after is None:
                break
            after = next_after
        assert [len(b.jobs) for b in batches] == [2, 2, 1]
        assert [len(b.queues) for b in batches] == [1, 0, 0]  # pauses come once, first
        assert sorted(j["id"] for b in batches for j in b.jobs) == sorted(
            job_id for name, job_id in ids.items() if name != "succeeded")
        # A batch that ends exactly at the last job leaves one empty batch to read.
        _, after = await store.export_rows(0, 5, everything=False)
        assert after is not None
        assert await store.export_rows(after, 5, everything=False) == (Carried([]), None)

    run(tmp_path / "source.db", body, inline=True)
