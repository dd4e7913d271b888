"""Fan-out at the store, on every backend: children a running attempt spawns (fenced by its
token, refused after a cancel, inserted once per id), a continuation that goes in with its
parent's success and waits for the children, the tree as one workflow, and a cancel of
the root that takes the tree with it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path

from scholarsource.quotas import QuotaPolicy, TenantOverride
from scholarsource.store import schema
from scholarsource.store.base import Claim, Ending, JobState, NewJob, Outcome, Spawn, Store
from scholarsource.store.fanout import CONTINUATION, child_id
from scholarsource.store.sqlite import CONTINUE_PARENTS, EXISTING, REFUSE, SPAWN_PARENTS
from tests.store.backends import Backend
from tests.store.test_sqlite import query_plan, run

POLICY = QuotaPolicy()


def new(task: str = "noop", *, tenant: str = "default") -> NewJob:
    return NewJob(task=task, params={}, queue="default", priority=0, max_attempts=2,
                  tenant=tenant)


def child(parent: Claim, key: int | str, *, after: tuple[str, ...] = (),
          task: str = "piece") -> NewJob:
    return dataclasses.replace(new(task, tenant=parent.tenant), id=child_id(parent.id, key),
                               parent_id=parent.id, depends_on=after)


def spawns(parent: Claim, *keys: int, token: int | None = None) -> list[Spawn]:
    return [Spawn(parent.id, parent.token if token is None else token, child(parent, key))
            for key in keys]


async def claim_all(store: Store) -> dict[str, Claim]:
    return {claim.id: claim for claim in await store.claim("pool", 100, 30)}


async def succeed(store: Store, claim: Claim, result: str = "null",
                  then: NewJob | None = None) -> dict[str, JobState]:
    return await store.finish([Outcome(claim.id, claim.token, Ending.SUCCEEDED,
                                       result_json=result, then=then)], max_crashes=3)


async def status(store: Store, job_id: str) -> JobState:
    job = await store.get("default", job_id)
    assert job is not None
    return job.status


def test_children_go_in_once_under_the_attempts_token(tmp_path: Path,
                                                      backend: Backend) -> None:
    async def body(store: Store) -> None:
        (root,) = await store.submit_many([new("fan_out")])
        (parent,) = (await claim_all(store)).values()
        await store.spawn(spawns(parent, 0, 1), POLICY)
        # A stale attempt's children are not written.
        await store.spawn(spawns(parent, 2, token=parent.token + 1), POLICY)
        assert await store.get("default", child_id(root.id, 2)) is None
        # The parent is the root of its own workflow, with its children in it.
        tree = await store.workflow("default", root.id)
        assert [(job.id, job.parent_id, job.workflow_id) for job in tree] == [
            (root.id, None, root.id),
            (child_id(root.id, 0), root.id, root.id), (child_id(root.id, 1), root.id, root.id)]
        assert {job.status for job in tree[1:]} == {JobState.QUEUED}
        # The same children again (a retry's submits) change nothing, even once they ran.
        claims = await claim_all(store)
        await succeed(store, claims[child_id(root.id, 0)], "7")
        await store.spawn(spawns(parent, 0, 1), POLICY)
        assert len(await store.workflow("default", root.id)) == 3
        assert await status(store, child_id(root.id, 0)) is JobState.SUCCEEDED
        assert await status(store, child_id(root.id, 1)) is JobState.RUNNING
        assert (await store.live_counts())["default"] == 2  # the root and one child

    run(tmp_path / "q.db", body, backend)


def test_a_cancel_stops_further_children_and_takes_the_tree(tmp_path: Path,
                                                            backend: Backend) -> None:
    async def body(store: Store) -> None:
        (root,) = await store.submit_many([new("fan_out")])
        (parent,) = (await claim_all(store)).values()
        await store.spawn(spawns(parent, 0, 1), POLICY)
        (running,) = await store.claim("pool", 1, 30)
        assert running.id == child_id(root.id, 0)
        cancelled = await store.cancel("default", root.id)
        assert cancelled is not None and cancelled.cancel_requested
        # The tree: the queued child is cancelled, the running one asked to stop.
        assert await status(store, child_id(root.id, 1)) is JobState.CANCELLED
        assert sorted(await store.cancel_requested("pool")) == sorted(
            [(root.id, parent.token), (running.id, running.token)])
        # The root, asked to stop, adds no child and no continuation.
        await store.spawn(spawns(parent, 2), POLICY)
        assert await store.get("default", child_id(root.id, 2)) is None
        then = child(parent, CONTINUATION, after=(child_id(root.id, 0),), task="gather")
        await succeed(store, parent, then=then)
        assert await store.get("default", then.id or "") is None

    run(tmp_path / "q.db", body, backend)


def test_a_continuation_waits_for_the_children_and_gets_their_results(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        (root,) = await store.submit_many([new("fan_out")])
        (parent,) = (await claim_all(store)).values()
        first, second = child_id(root.id, 0), child_id(root.id, 1)
        # The second child depends on its sibling, spawned in the same batch.
        await store.spawn([Spawn(parent.id, parent.token, child(parent, 0)),
                           Spawn(parent.id, parent.token, child(parent, 1, after=(first,)))],
                          POLICY)
        assert await status(store, second) is JobState.WAITING
        ran = await claim_all(store)
        assert set(ran) == {first}
        await succeed(store, ran[first], '"a"')  # before the parent ends: counted at once
        then = child(parent, CONTINUATION, after=(first, second), task="gather")
        states = await succeed(store, parent, '{"continued_by": "x"}', then=then)
        assert states == {root.id: JobState.SUCCEEDED}
        assert then.id is not None and await status(store, then.id) is JobState.WAITING
        (claim,) = (await claim_all(store)).values()
        assert claim.id == second
        assert json.loads(claim.parents_json or "") == {first: "a"}
        await succeed(store, claim, '"b"')
        (gathered,) = (await claim_all(store)).values()
        assert gathered.id == then.id
        assert json.loads(gathered.parents_json or "") == {first: "a", second: "b"}
        tree = await store.workflow("default", root.id)
        assert [(job.id, job.parent_id) for job in tree] == [
            (root.id, None), (first, root.id), (second, root.id), (then.id, root.id)]
        # A second finish of the same attempt is stale: no second continuation.
        assert await succeed(store, parent, then=then) == {}
        assert len(await store.workflow("default", root.id)) == 4

    run(tmp_path / "q.db", body, backend)


def test_a_failed_attempt_adds_no_continuation(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        (root,) = await store.submit_many([new("fan_out")])
        (parent,) = (await claim_all(store)).values()
        then = child(parent, CONTINUATION, task="gather")
        await store.finish([Outcome(parent.id, parent.token, Ending.FAILED, error="boom",
                                    retry_at=0.0, then=then)], max_crashes=3)
        assert await status(store, root.id) is JobState.RETRYING
        assert await store.get("default", then.id or "") is None

    run(tmp_path / "q.db", body, backend)


def test_children_past_max_queued_go_in_cancelled_as_quota_exceeded(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        (root,) = await store.submit_many([new("fan_out")])
        (parent,) = (await claim_all(store)).values()
        await store.set_tenant_limits("default", TenantOverride(max_queued=3))
        # The root is one unfinished job: two children fit, the third and fourth do not.
        third = child(parent, 3, after=(child_id(root.id, 2),))
        await store.spawn([*spawns(parent, 0, 1, 2), Spawn(parent.id, parent.token, third)],
                          POLICY)
        tree = {job.id: job for job in await store.workflow("default", root.id)}
        assert [tree[child_id(root.id, n)].status for n in range(4)] == [
            JobState.QUEUED, JobState.QUEUED, JobState.CANCELLED, JobState.CANCELLED]
        refused = tree[child_id(root.id, 2)]
        assert refused.error_code == "quota_exceeded"
        assert refused.error == ("quota_exceeded: tenant 'default' may have at most 3 jobs "
                                 "not yet finished")
        assert refused.finished_at is not None
        assert (await store.live_counts())["default"] == 3
        # The server's cap counts every tenant's.
        await store.clear_tenant_limits("default")
        await store.spawn(spawns(parent, 4), QuotaPolicy(max_queued=3))
        assert await status(store, child_id(root.id, 4)) is JobState.CANCELLED
        await store.spawn(spawns(parent, 5), QuotaPolicy(max_queued=4))
        assert await status(store, child_id(root.id, 5)) is JobState.QUEUED

    run(tmp_path / "q.db", body, backend)


def test_a_spawn_probes_each_job_by_its_id(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    for sql, args in ((SPAWN_PARENTS, {"batch": "[]"}), (CONTINUE_PARENTS, {"batch": "[]"}),
                      (EXISTING, {"ids": "[]"}), (REFUSE, {"refused": "[]", "now": 0})):
        plan = query_plan(conn, sql, args)
        assert "SCAN jobs" not in plan, plan
        assert "INDEX sqlite_autoindex_jobs_1 (id=?)" in plan, plan
    conn.close()


def test_children_results_and_a_claim_go_in_one_batch(tmp_path: Path, backend: Backend) -> None:
    # The pool's turn: what its slots spawned, their results with a continuation and the
    # claim, in one Store.batch (one transaction on SQLite, where a spawn that waited for
    # the batch's own lock hung the pool for good).
    async def body(store: Store) -> None:
        (root,) = await store.submit_many([new("fan_out")])
        (parent,) = (await claim_all(store)).values()
        kids = [child(parent, key).id for key in (0, 1)]
        then = dataclasses.replace(new("gather"), depends_on=tuple(kids))
        async with asyncio.timeout(10), store.batch():
            await store.spawn(spawns(parent, 0, 1), POLICY)
            await succeed(store, parent, then=then)
            claimed = await claim_all(store)
        assert set(claimed) == set(kids)
        assert await status(store, root.id) is JobState.SUCCEEDED

    run(tmp_path / "q.db", body, backend)
