"""Artifact rows on every backend: recorded with a success in its transaction (never with a
stale or failed outcome), read with the job alone, counted in a running total, kept per
attempt for the sweep, handed to a claimed child with its parents', and deleted with their
job, which leaves a grave for the files; and the pool's periodic sweep over them."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from scholarsource.artifacts import attempt_dir, relative_path
from scholarsource.errors import StoreUnavailable
from scholarsource.pool import sweep
from scholarsource.pool.sweep import Sweep
from scholarsource.store.base import Artifact, Carried, Ending, JobState, Outcome, Store
from scholarsource.store.sqlite import SqliteStore
from tests.store.backends import Backend
from tests.store.test_retention import FAR, backdate
from tests.store.test_sqlite import failed, job, run


def files(job_id: str, attempt: int, *sizes: int) -> tuple[Artifact, ...]:
    return tuple(Artifact(f"f{i}.txt", size, f"{i:064x}", "text/plain",
                          relative_path(job_id, attempt, f"f{i}.txt"))
                 for i, size in enumerate(sizes))


def success(job_id: str, token: int, artifacts: tuple[Artifact, ...]) -> Outcome:
    return Outcome(job_id, token, Ending.SUCCEEDED, result_json="null", artifacts=artifacts)


def test_a_success_records_its_files_and_the_job_shows_them(tmp_path: Path,
                                                            backend: Backend) -> None:
    async def body(store: Store) -> None:
        new = await store.submit(job())
        (claim,) = await store.claim("p", 1, 30)
        made = files(claim.id, claim.attempt, 10, 20)
        states = await store.finish([success(claim.id, claim.token, made)], max_crashes=3)
        assert states == {claim.id: JobState.SUCCEEDED}
        got = await store.get("default", new.id)
        assert got is not None and got.artifacts == list(made)
        assert got.to_json()["artifacts"][1] == {
            "name": "f1.txt", "size": 20, "sha256": f"{1:064x}", "content_type": "text/plain",
            "url": f"/api/jobs/{new.id}/artifacts/f1.txt"}
        assert await store.artifact_bytes() == 30
        assert await store.artifacts_of([new.id, "nope"]) == {new.id: list(made)}
        assert await store.kept_attempts([new.id]) == {new.id: {1}}
        # Another tenant sees no job; a list leaves artifacts out (None: not read).
        assert await store.get("other", new.id) is None
        listed, _ = await store.list_jobs("default")
        assert listed[0].artifacts is None and "artifacts" not in listed[0].to_json()

    run(tmp_path / "q.db", body, backend)


def test_a_claimed_child_carries_its_parents_artifacts(tmp_path: Path,
                                                       backend: Backend) -> None:
    async def body(store: Store) -> None:
        writer, plain = await store.submit_many([job(), job()])
        claims = {c.id: c for c in await store.claim("p", 2, 30)}
        assert claims[writer.id].parent_artifacts is None  # no parents: nothing looked up
        made = files(writer.id, 1, 10, 20)
        await store.finish([success(writer.id, claims[writer.id].token, made),
                            success(plain.id, claims[plain.id].token, ())], max_crashes=3)
        (child,) = await store.submit_many([dataclasses.replace(
            job(), depends_on=(writer.id, plain.id))])
        (claim,) = await store.claim("p", 1, 30)
        # A parent without files is left out.
        assert claim.id == child.id and claim.parent_artifacts == {writer.id: list(made)}

    run(tmp_path / "q.db", body, backend)


def test_stale_and_failed_outcomes_record_no_files(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        a, b = await store.submit_many([job(attempts=2), job()])
        claims = {c.id: c for c in await store.claim("p", 2, 30)}
        ca, cb = claims[a.id], claims[b.id]
        # A stale token (the attempt was taken back) and a failure: nothing recorded, in
        # the same batch as a failure that goes on retrying.
        states = await store.finish([
            success(ca.id, ca.token + 1, files(ca.id, 1, 5)),
            Outcome(cb.id, cb.token, Ending.FAILED, error_code="task_error", error="x",
                    retry_at=time.time(), artifacts=files(cb.id, 1, 7))], max_crashes=3)
        assert states == {cb.id: JobState.DEAD}
        assert await store.artifact_bytes() == 0
        assert await store.artifacts_of([a.id, b.id]) == {}
        # The running attempt's directory is kept; a dead job's, none.
        assert await store.kept_attempts([a.id, b.id]) == {a.id: {1}}
        got = await store.get("default", a.id)
        assert got is not None and got.artifacts == []
        await store.finish([failed(ca.id, ca.token)], max_crashes=3)

    run(tmp_path / "q.db", body, backend)


def test_pruning_a_job_deletes_its_rows_and_leaves_a_grave(tmp_path: Path,
                                                           backend: Backend) -> None:
    async def body(store: Store) -> None:
        kept, pruned, plain = await store.submit_many([job(), job(), job()])
        for claim in await store.claim("p", 3, 30):
            made = () if claim.id == plain.id else files(claim.id, 1, 100, 1)
            await store.finish([success(claim.id, claim.token, made)], max_crashes=3)
        assert await store.artifact_bytes() == 202
        for job_id in (pruned.id, plain.id):
            await backdate(backend, store, job_id, 365 * 86400)
        assert await store.prune(JobState.SUCCEEDED, time.time() - 86400, 10) == 2
        assert await store.artifact_bytes() == 101
        assert await store.artifacts_of([pruned.id]) == {}
        assert await store.graves(10) == [pruned.id]  # a job without files leaves none
        await store.bury([pruned.id])
        assert await store.graves(10) == []
        assert await store.prune(JobState.SUCCEEDED, FAR, 10) == 1
        assert await store.graves(10) == [kept.id]

    run(tmp_path / "q.db", body, backend)


def test_migrate_to_carries_a_jobs_artifacts(tmp_path: Path, backend: Backend) -> None:
    """`migrate-to --everything` moves a succeeded job with its artifact rows (the files stay
    under artifacts_dir, which the new store's boxes must see); a job the target already has
    keeps its own."""
    source_path = tmp_path / "source.db"

    async def stopped_server(source: Store) -> tuple[str, tuple[Artifact, ...]]:
        new = await source.submit(job())
        (claim,) = await source.claim("p", 1, 30)
        made = files(claim.id, claim.attempt, 10, 20)
        await source.finish([success(claim.id, claim.token, made)], max_crashes=3)
        return new.id, made

    job_id, made = run(source_path, stopped_server, backend=True)

    async def export(source: Store) -> Carried:
        assert isinstance(source, SqliteStore)
        carried, _ = await source.export_rows(0, 100, everything=True)
        return carried

    carried = run(source_path, export, backend=True)
    assert [row["name"] for row in carried.artifacts] == ["f0.txt", "f1.txt"]

    async def body(store: Store) -> None:
        assert (await store.import_rows(carried)).jobs == 1
        moved = await store.get("default", job_id)
        assert moved is not None and moved.artifacts == list(made)
        assert await store.artifact_bytes() == 30
        # Again: the job is there already, and nothing is imported twice.
        assert (await store.import_rows(carried)).jobs == 0
        assert await store.artifact_bytes() == 30

    run(tmp_path / "target.db", body, backend)


def test_the_periodic_sweep_judges_a_chunk_a_turn_and_deletes_only_what_no_job_keeps(
        tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "SWEEP_CHUNK", 2)
    root = tmp_path / "artifacts"

    def attempt(job_id: str, number: int) -> Path:
        directory = attempt_dir(root, job_id, number)
        directory.mkdir(parents=True)
        (directory / "f.txt").write_text("x")
        (directory / "f.txt").chmod(0o444)  # as a settled attempt leaves it
        return directory

    async def body(store: Store) -> None:
        done, running = await store.submit_many([job(), job()])
        claims = {c.id: c for c in await store.claim("p", 2, 30)}
        await store.finish([success(done.id, claims[done.id].token, files(done.id, 1, 1))],
                           max_crashes=3)
        kept = [attempt(done.id, 1), attempt(running.id, 1)]
        # A success whose answer was lost and that the store does not hold, and the files
        # of jobs the store no longer has.
        strays = [attempt(done.id, 2), *(attempt(f"gone{i}", 1) for i in range(3))]
        asked: list[list[str]] = []
        real = store.kept_attempts

        async def counting(job_ids: list[str]) -> dict[str, set[int]]:
            asked.append(job_ids)
            return await real(job_ids)

        monkeypatch.setattr(store, "kept_attempts", counting)
        sweeper = Sweep(root, 60.0)
        now = time.monotonic()
        await sweeper.step(store, now)  # not due yet: the pool's start has just swept
        await asyncio.sleep(0.05)
        await sweeper.step(store, now)
        assert asked == [] and all(d.exists() for d in strays)
        later = now + 61
        for _ in range(200):
            await sweeper.step(store, later)
            if not any(d.exists() for d in strays):
                break
            await asyncio.sleep(0.01)
        assert not any(d.exists() for d in strays) and all(d.exists() for d in kept)
        # Five job directories, two per store call: one call a turn, none of them bigger.
        assert sorted(len(ids) for ids in asked) == [1, 2, 2]
        assert sorted(i for ids in asked for i in ids) == sorted(
            [done.id, running.id, "gone0", "gone1", "gone2"])
        # Until the next interval, no turn lists or asks again.
        asked.clear()
        await sweeper.step(store, later + 1)
        assert asked == []

        # A store that cannot answer ends that sweep; nothing is deleted on a guess.
        stray = attempt("gone9", 1)

        async def refusing(job_ids: list[str]) -> dict[str, set[int]]:
            raise StoreUnavailable("database is locked")

        monkeypatch.setattr(store, "kept_attempts", refusing)
        for _ in range(50):
            await sweeper.step(store, later + 61)
            await asyncio.sleep(0.01)
        assert stray.exists()
        monkeypatch.setattr(store, "kept_attempts", real)
        for _ in range(200):
            await sweeper.step(store, later + 122)
            if not stray.exists():
                break
            await asyncio.sleep(0.01)
        assert not stray.exists() and all(d.exists() for d in kept)

    run(tmp_path / "q.db", body, backend)
