"""The operator figures on every backend: counts per state and queue, queue stats, recent
finishes, and the published task registry as the API reads it back."""

from __future__ import annotations

import time
from pathlib import Path

from scholarsource.store.base import JobState, Store, TaskDefaults
from tests.store.backends import Backend
from tests.store.test_sqlite import failed, job, ok, run


def test_counts_per_state_and_queue(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job(queue="mail"), job(queue="mail"), job(queue="pdf"),
                                 job(queue="pdf", tenant="b")])
        (claim,) = await store.claim("p", 1, 30)  # the first mail job
        before = time.time()
        await store.finish([failed(claim.id, claim.token)], max_crashes=3)
        assert await store.counts() == {**{s.value: 0 for s in JobState},
                                        "queued": 3, "dead": 1}
        assert (await store.counts("b"))["queued"] == 1
        assert await store.queue_counts(None) == {"mail": {"queued": 1, "dead": 1},
                                                  "pdf": {"queued": 2}}
        assert await store.queue_counts("default") == {"mail": {"queued": 1, "dead": 1},
                                                       "pdf": {"queued": 1}}
        stats = {s.name: s for s in await store.queue_stats(before - 1)}
        assert (stats["mail"].queued, stats["mail"].finished) == (1, 1)
        assert (stats["pdf"].queued, stats["pdf"].running, stats["pdf"].finished) == (2, 0, 0)
        oldest = stats["pdf"].oldest_queued_at
        assert oldest is not None and oldest <= time.time()
        assert [s.name for s in await store.queue_stats(time.time() + 60)] == ["mail", "pdf"]

    run(tmp_path / "q.db", body, backend)


def test_queue_stats_and_rates_count_one_tenants_jobs_when_asked(tmp_path: Path,
                                                                 backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.publish_tasks([TaskDefaults("limited", "mail", None, None,
                                                rate_limit=1, rate_window=3600.0)])
        await store.submit_many([job("limited", queue="mail", tenant="a"),
                                 job("limited", queue="mail", tenant="a"),
                                 job(queue="secret", tenant="a"),
                                 job("limited", queue="mail", tenant="b")])
        (claim,) = await store.claim("p", 1, 30)  # a's first: the limit's one start
        before = time.time()
        await store.finish([ok(claim.id, claim.token)], max_crashes=3)
        everyone = {s.name: s for s in await store.queue_stats(before - 1)}
        assert (everyone["mail"].queued, everyone["mail"].finished) == (2, 1)
        assert set(everyone) == {"mail", "secret"}
        a = {s.name: s for s in await store.queue_stats(before - 1, "a")}
        assert (a["mail"].queued, a["mail"].finished, a["secret"].queued) == (1, 1, 1)
        [b] = await store.queue_stats(before - 1, "b")  # a's "secret" queue is not b's
        assert (b.name, b.queued, b.finished) == ("mail", 1, 0)
        assert await store.queue_stats(before - 1, "nobody") == []
        # The limit and its starts are the server's; the queued counts are the tenant's.
        assert [(r.task, r.started, r.queued) for r in await store.rates()] == \
            [("limited", 1, 2)]
        assert [(r.started, r.queued) for r in await store.rates("b")] == [(1, 1)]
        assert [(r.started, r.queued) for r in await store.rates("nobody")] == [(1, 0)]

    run(tmp_path / "q.db", body, backend)


def test_recently_finished_is_newest_first_and_bounded(tmp_path: Path,
                                                       backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.submit_many([job("a"), job("b"), job("c")])
        for claim in await store.claim("p", 3, 30):
            await store.finish([ok(claim.id, claim.token)], max_crashes=3)
        recent = await store.recently_finished("default", time.time() - 60, 2)
        assert [f.task for f in recent] == ["c", "b"]
        assert all(f.status is JobState.SUCCEEDED and f.started_at is not None
                   for f in recent)
        assert await store.recently_finished("other", 0, 10) == []

    run(tmp_path / "q.db", body, backend)


def test_the_published_registry_reads_back_whole(tmp_path: Path, backend: Backend) -> None:
    tasks = [TaskDefaults("fetch", "io", 30.0, 3, memory=100, memory_limit=200,
                          backoff_base=2.0, backoff_max=60.0,
                          params={"type": "object", "properties": {"url": {"type": "string"}}},
                          cache_ttl=5.0, unique=True, rate_limit=10, rate_window=1.0,
                          concurrency_limit=2),
             TaskDefaults("noop", "default", None, None)]

    async def body(store: Store) -> dict[str, TaskDefaults]:
        await store.publish_tasks([TaskDefaults("gone", "default", None, None)])
        await store.publish_tasks(tasks)  # replaces the registry
        return await store.tasks()

    assert run(tmp_path / "q.db", body, backend) == {t.name: t for t in tasks}
