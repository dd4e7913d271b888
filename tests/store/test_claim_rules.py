"""The rules the claim query itself applies: pauses, rate limits, concurrency keys, gates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scholarsource.store.base import OPEN, Gate, Store, TaskDefaults
from tests.store.backends import Backend
from tests.store.test_sqlite import job, ok, run


async def _claim_all(store: Store, gate: Gate = OPEN) -> list[str]:
    return [c.task for c in await store.claim("pool", 100, 30, gate=gate)]


def test_a_paused_queue_is_passed_over_and_resumes(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit(job("a", priority=9, queue="slow"))
        await store.submit(job("b", queue="fast"))
        await store.pause_queue("slow", True)
        assert await store.paused_queues() == {"slow"}
        assert await _claim_all(store) == ["b"]
        await store.pause_queue("slow", False)
        assert await _claim_all(store) == ["a"]
    run(tmp_path / "q.db", body, backend)


def test_a_gate_skips_queues_or_keeps_to_some(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        for queue in ("x", "y", "z"):
            await store.submit(job(queue, queue=queue))
        assert await store.peek(5, Gate(skip=("x",))) != []
        assert await _claim_all(store, Gate(only=("y",))) == ["y"]
        assert await _claim_all(store, Gate(skip=("x",))) == ["z"]
        assert await _claim_all(store) == ["x"]
    run(tmp_path / "q.db", body, backend)


def test_a_rate_limited_task_starts_at_most_its_limit_per_window(tmp_path: Path,
                                                                  backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.publish_tasks([TaskDefaults("limited", "default", None, None,
                                                rate_limit=2, rate_window=3600.0),
                                   TaskDefaults("free", "default", None, None)])
        for _ in range(4):
            await store.submit(job("limited", priority=5))
        await store.submit(job("free"))
        taken = [c.task for _ in range(6) for c in await store.claim("pool", 1, 30)]
        # two of the limited task, then the free one passes the two left waiting
        assert taken == ["limited", "limited", "free"]
        [rate] = await store.rates()
        assert (rate.task, rate.started, rate.queued, rate.throttled) == ("limited", 2, 2, True)
        assert await store.rate_free_at() is not None
    run(tmp_path / "q.db", body, backend)


def test_one_concurrency_key_runs_up_to_its_limit_and_others_pass(tmp_path: Path,
                                                                   backend: Backend) -> None:
    async def body(store: Store) -> None:
        keyed = dataclasses.replace(job("a", priority=5), concurrency_key="user-a",
                                    concurrency_limit=1)
        for _ in range(3):
            await store.submit(keyed)
        await store.submit(dataclasses.replace(job("b"), concurrency_key="user-b",
                                               concurrency_limit=1))
        # One batch takes one job per key, whatever the batch size.
        first = await store.claim("pool", 10, 30)
        assert sorted(c.task for c in first) == ["a", "b"]
        assert await store.claim("pool", 10, 30) == []
        a = next(c for c in first if c.task == "a")
        await store.finish([ok(a.id, a.token)], max_crashes=3)
        assert [c.task for c in await store.claim("pool", 10, 30)] == ["a"]
    run(tmp_path / "q.db", body, backend)


def test_a_key_is_per_tenant(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        for tenant in ("t1", "t2"):
            for _ in range(2):
                await store.submit(dataclasses.replace(
                    job("a", tenant=tenant), concurrency_key="k", concurrency_limit=1))
        # A claim is one tenant's turn (store/base.py): each tenant's key runs one job.
        taken = [c.tenant for _ in range(3) for c in await store.claim("pool", 10, 30)]
        assert sorted(taken) == ["t1", "t2"]
    run(tmp_path / "q.db", body, backend)
