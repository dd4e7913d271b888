"""Dependencies between jobs at the store, on every backend: a child waits for its parents,
is released in the transaction that ends each one (whatever path ends it), sees their results
when claimed, and a failed parent cancels it (or not, with on_parent_failure = "run")."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from scholarsource.errors import UnknownParent, ValidationFailed
from scholarsource.quotas import Ask, QuotaPolicy
from scholarsource.store import schema
from scholarsource.store.admission import Admitted
from scholarsource.store.base import (
    LIVE_STATES,
    Carried,
    Claim,
    Ending,
    Job,
    JobState,
    NewJob,
    Outcome,
    Store,
)
from scholarsource.store.deps import MAX_DEPTH
from scholarsource.store.postgres import sql as pg_sql
from scholarsource.store.postgres.store import _link as pg_link
from scholarsource.store.postgres.store import _rows as pg_rows
from scholarsource.store.rows import new_job_id, new_jobs
from scholarsource.store.sqlite import (
    ARTIFACTS_OF,
    LINK_EDGES,
    LINK_PARENTS,
    PARENT_RESULTS,
    SETTLE,
    WORKFLOW,
    WORKFLOWS,
    SqliteStore,
)
from tests.store.backends import Backend
from tests.store.test_artifacts import files, success
from tests.store.test_sqlite import query_plan, run


def new(task: str = "noop", *, after: tuple[str, ...] = (), tenant: str = "default",
        run_anyway: bool = False, id_: str | None = None,
        workflow: str | None = None, step: str | None = None) -> NewJob:
    return NewJob(task=task, params={}, queue="default", priority=0, max_attempts=1,
                  tenant=tenant, depends_on=after,
                  on_parent_failure="run" if run_anyway else "cancel", id=id_,
                  workflow_id=workflow, step=step)


async def claim_all(store: Store) -> dict[str, Claim]:
    return {claim.id: claim for claim in await store.claim("pool", 100, 30)}


async def end(store: Store, claim: Claim, ending: Ending = Ending.SUCCEEDED,
              result: str | None = None) -> None:
    await store.finish([Outcome(claim.id, claim.token, ending, result_json=result,
                                error="boom" if ending is not Ending.SUCCEEDED else None)],
                       max_crashes=3)


async def state(store: Store, job: Job, tenant: str = "default") -> Job:
    found = await store.get(tenant, job.id)
    assert found is not None
    return found


def test_a_child_waits_for_every_parent_and_sees_their_results(tmp_path: Path,
                                                               backend: Backend) -> None:
    async def body(store: Store) -> None:
        a, b = await store.submit_many([new(), new()])
        (child,) = await store.submit_many([new(after=(a.id, b.id))])
        assert child.status is JobState.WAITING and child.depends_on == [a.id, b.id]
        claims = await claim_all(store)
        assert set(claims) == {a.id, b.id}  # the waiting child is not claimed
        assert not claims[a.id].has_parents and claims[a.id].parents_json is None
        await end(store, claims[a.id], result='{"n": 1}')
        assert (await state(store, child)).status is JobState.WAITING  # b still runs
        await end(store, claims[b.id], result="[2]")
        assert (await state(store, child)).status is JobState.QUEUED
        (claim,) = (await claim_all(store)).values()
        assert claim.id == child.id and claim.has_parents
        assert claim.parents_json is not None
        assert json.loads(claim.parents_json) == {a.id: {"n": 1}, b.id: [2]}
        assert (await state(store, child)).to_json()["depends_on"] == [a.id, b.id]

    run(tmp_path / "q.db", body, backend)


def test_a_child_claims_its_parents_artifacts(tmp_path: Path, backend: Backend) -> None:
    # What ctx.parent_artifacts is made of: each parent's files, by parent, on the claim.
    async def body(store: Store) -> None:
        a, b = await store.submit_many([new(), new()])
        (child,) = await store.submit_many([new(after=(a.id, b.id))])
        claims = await claim_all(store)
        made = files(a.id, 1, 10, 20)
        await store.finish([success(a.id, claims[a.id].token, made)], max_crashes=3)
        await end(store, claims[b.id])  # a parent without files
        (claim,) = (await claim_all(store)).values()
        assert claim.id == child.id and claim.parent_artifacts is not None
        assert list(claim.parent_artifacts) == [a.id]  # in no particular order
        assert sorted(claim.parent_artifacts[a.id], key=lambda f: f.name) == list(made)
        assert claims[a.id].parent_artifacts is None  # no parents, nothing read

    run(tmp_path / "q.db", body, backend)


def test_a_dead_parent_cancels_the_tree_below_it_naming_the_parent(tmp_path: Path,
                                                                   backend: Backend) -> None:
    async def body(store: Store) -> None:
        (parent,) = await store.submit_many([new()])
        (child,) = await store.submit_many([new(after=(parent.id,))])
        (grandchild,) = await store.submit_many([new(after=(child.id,))])
        (claim,) = (await claim_all(store)).values()
        await end(store, claim, Ending.FAILED)
        assert (await state(store, parent)).status is JobState.DEAD
        for job, cause in ((child, parent), (grandchild, child)):
            now = await state(store, job)
            assert now.status is JobState.CANCELLED and now.status.final
            assert now.error_code == "parent_failed"
            assert now.error == f"parent_failed: its parent {cause.id} ended " + (
                "dead" if cause is parent else "cancelled")
            assert now.finished_at is not None
            events = await store.events("default", job.id)
            assert events[-1].data["status"] == "cancelled"
            assert cause.id in events[-1].data["error"]
        assert await store.claim("pool", 10, 30) == []
        assert (await store.counts())["waiting"] == 0

    run(tmp_path / "q.db", body, backend)


def test_a_child_that_runs_anyway_counts_a_failed_parent_as_done(tmp_path: Path,
                                                                 backend: Backend) -> None:
    async def body(store: Store) -> None:
        a, b = await store.submit_many([new(), new()])
        (child,) = await store.submit_many([new(after=(a.id, b.id), run_anyway=True)])
        claims = await claim_all(store)
        await end(store, claims[a.id], Ending.FAILED)
        assert (await state(store, child)).status is JobState.WAITING
        await end(store, claims[b.id], result="7")
        (claim,) = (await claim_all(store)).values()
        assert claim.id == child.id
        assert json.loads(claim.parents_json or "") == {a.id: None, b.id: 7}

    run(tmp_path / "q.db", body, backend)


def test_every_path_to_a_final_state_releases(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        # cancel (queued), bulk cancel, and a crash that ends dead in recovery.
        p1, p2, p3 = await store.submit_many([new("one"), new("two"), new("three")])
        c1, c2, c3 = await store.submit_many([new(after=(p1.id,)), new(after=(p2.id,)),
                                              new(after=(p3.id,), run_anyway=True)])
        await store.cancel("default", p1.id)
        assert (await state(store, c1)).error_code == "parent_failed"
        await store.cancel_matching("default", task="two")
        assert (await state(store, c2)).error_code == "parent_failed"
        (claim,) = (await claim_all(store)).values()
        assert claim.id == p3.id
        await backend.query(store, "UPDATE jobs SET lease_until = 0 WHERE status = 'running'")
        assert await store.recover("other", max_crashes=1) == 1
        assert (await state(store, p3)).status is JobState.DEAD
        assert (await state(store, c3)).status is JobState.QUEUED

    run(tmp_path / "q.db", body, backend)


def test_a_parent_already_final_counts_at_once(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        (done,) = await store.submit_many([new()])
        (claim,) = (await claim_all(store)).values()
        await end(store, claim, result="1")
        (doomed,) = await store.submit_many([new()])
        await store.cancel("default", doomed.id)
        live = (await store.submit_many([new()]))[0]
        ready, failed, mixed, anyway = await store.submit_many([
            new(after=(done.id,)), new(after=(doomed.id,)), new(after=(done.id, live.id)),
            new(after=(doomed.id,), run_anyway=True)])
        # The submit answers with each job as its transaction left it.
        assert ready.status is JobState.QUEUED
        assert failed.status is JobState.CANCELLED
        assert failed.error == f"parent_failed: its parent {doomed.id} ended cancelled"
        assert mixed.status is JobState.WAITING
        assert anyway.status is JobState.QUEUED
        for job in (ready, failed, mixed, anyway):
            assert (await state(store, job)).status is job.status

    run(tmp_path / "q.db", body, backend)


def test_an_unknown_or_foreign_parent_is_refused_alike_and_writes_nothing(
        tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        (theirs,) = await store.submit_many([new(tenant="other")])
        before = await store.counts()
        errors = []
        for parent in (theirs.id, new_job_id()):
            with pytest.raises(UnknownParent) as caught:
                await store.submit_many([new(), new(after=(parent,))])
            errors.append(caught.value.to_json())
            with pytest.raises(UnknownParent):
                await store.admit([(Ask("default"), [new(after=(parent,))])], QuotaPolicy())
        # Another tenant's job answers exactly as an id nobody has: no existence oracle.
        for error in errors:
            assert error == {"error": "unknown_parent", "field": "depends_on",
                             "message": f"depends_on: no job {error['parent']!r}",
                             "parent": error["parent"]}
        assert await store.counts() == before
        assert await store.live_counts() == {"other": 1}

    run(tmp_path / "q.db", body, backend)


def test_a_workflow_goes_in_through_admission_in_one_transaction(tmp_path: Path,
                                                                 backend: Backend) -> None:
    async def body(store: Store) -> None:
        wf = new_job_id()
        first, last = new_job_id(), new_job_id()
        # The later step comes first in the group: links are made after every insert.
        steps = [new(id_=last, after=(first,), workflow=wf, step="report"),
                 new(id_=first, workflow=wf, step="validate")]
        (admitted,) = await store.admit([(Ask("default"), steps)], QuotaPolicy())
        assert isinstance(admitted, Admitted)
        assert [(j.id, j.status) for j in admitted.new] == [
            (last, JobState.WAITING), (first, JobState.QUEUED)]
        jobs = await store.workflow("default", wf)
        assert sorted((j.step, j.workflow_id) for j in jobs) == [("report", wf),
                                                                  ("validate", wf)]
        assert await store.workflow("other", wf) == []
        assert await store.cancel_workflow("other", wf) == (0, 0)
        assert await store.cancel_workflow("default", wf) == (2, 0)
        assert {j.status for j in await store.workflow("default", wf)} == {
            JobState.CANCELLED}

    run(tmp_path / "q.db", body, backend)


def test_waiting_is_live_and_not_final() -> None:
    assert JobState.WAITING in LIVE_STATES and not JobState.WAITING.final


def test_releasing_a_parents_children_is_an_index_range(tmp_path: Path) -> None:
    """The trigger's own statements, as stored, read job_deps by its primary key and jobs by
    id: the cost of a release does not grow with the jobs waiting (bench/deps.py measures
    it)."""
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    (trigger,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_release'"
                              ).fetchone()
    body = trigger[trigger.index("BEGIN") + len("BEGIN"):trigger.rindex("END")]
    update, delete = [s.strip() for s in body.split(";") if s.strip()]
    bound = {"id": "p", "status": "dead"}
    for statement in (update, delete):
        sql = re.sub(r"NEW\.(\w+)", lambda m: f":{m.group(1)}", statement)
        plan = query_plan(conn, sql, bound)
        assert "SCAN" not in plan, plan
        assert "USING PRIMARY KEY (parent=?)" in plan or \
            "USING COVERING INDEX sqlite_autoindex_job_deps_1 (parent=?)" in plan, plan
    conn.close()


def test_a_tenants_workflows_list_newest_first_with_their_states(tmp_path: Path,
                                                                   backend: Backend) -> None:
    async def body(store: Store) -> None:
        older, newer = new_job_id(), new_job_id()
        await store.submit_many([new(workflow=older, step="a"), new(workflow=older, step="b")])
        await store.submit_many([new(workflow=newer, step="a"), new()])  # one plain job
        await store.submit_many([new(workflow=new_job_id(), tenant="other")])
        (first,) = await store.workflow("default", newer)
        await store.cancel("default", first.id)
        listed = await store.workflows("default", 10)
        assert [(w.id, w.steps, w.counts) for w in listed] == [
            (newer, 1, {"cancelled": 1}), (older, 2, {"queued": 2})]
        assert listed[0].created_at == first.created_at
        assert [w.id for w in await store.workflows("default", 1)] == [newer]
        assert await store.workflows("nobody", 10) == []

    run(tmp_path / "q.db", body, backend)


def test_linking_claiming_and_listing_a_workflow_read_indexes_only(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    plans = {name: query_plan(conn, sql, args) for name, sql, args in (
        ("parents", LINK_PARENTS, {"links": "[]"}), ("edges", LINK_EDGES, {"links": "[]"}),
        ("settle", SETTLE, {"links": "[]", "now": 0}),
        ("results", PARENT_RESULTS, {"ids": "[]"}), ("workflow", WORKFLOW, ("t", "w")),
        ("workflows", WORKFLOWS, {"tenant": "t", "limit": 50}),
        ("artifacts", ARTIFACTS_OF, {"ids": "[]"}))}
    for name, plan in plans.items():
        assert "SCAN jobs" not in plan and "SCAN p " not in plan, (name, plan)
    assert "SEARCH p USING INDEX sqlite_autoindex_jobs_1 (id=?)" in plans["results"]
    # The parents' artifacts, once per claim for every parent: their primary key, in order.
    assert "SEARCH artifacts USING PRIMARY KEY (job_id=?)" in plans["artifacts"]
    assert "TEMP B-TREE" not in plans["artifacts"]
    assert plans["workflow"] == ("SEARCH jobs USING INDEX jobs_workflow "
                                 "(tenant=? AND workflow_id=?)")
    # The list finds the newest workflows from the index alone, then reads the jobs of
    # those only, each workflow an index range.
    assert "SEARCH jobs USING COVERING INDEX jobs_workflow (tenant=? AND workflow_id>?)" \
        in plans["workflows"]
    assert "SEARCH j USING INDEX jobs_workflow (tenant=? AND workflow_id=?)" \
        in plans["workflows"]
    conn.close()


def test_a_waiting_job_moves_to_another_store_still_waiting(tmp_path: Path,
                                                            backend: Backend) -> None:
    """migrate-to carries each waiting job's count and unreleased edges: its parent's end
    in the new store releases it."""
    source_path = tmp_path / "source.db"

    async def stopped_server(source: Store) -> tuple[Job, Job, Job]:
        (done,) = await source.submit_many([new("done")])
        (claim,) = (await claim_all(source)).values()
        await end(source, claim, result="5")
        (live,) = await source.submit_many([new("live")])
        (child,) = await source.submit_many([new(after=(done.id, live.id))])
        return done, live, child

    done, live, child = run(source_path, stopped_server, backend=True)

    async def export(source: Store) -> object:
        assert isinstance(source, SqliteStore)
        carried, _ = await source.export_rows(0, 100, everything=True)
        return carried

    carried = run(source_path, export, backend=True)
    assert isinstance(carried, Carried) and carried.deps == [[live.id, child.id]]

    async def body(store: Store) -> None:
        assert (await store.import_rows(carried)).jobs == 3
        moved = await state(store, child)
        assert (moved.status, moved.depends_on) == (JobState.WAITING, [done.id, live.id])
        (claim,) = (await claim_all(store)).values()
        assert claim.id == live.id
        await end(store, claim, result="7")
        (claim,) = (await claim_all(store)).values()
        assert claim.id == child.id
        assert json.loads(claim.parents_json or "") == {done.id: 5, live.id: 7}

    run(tmp_path / "target.db", body, backend)


def test_a_parent_that_ends_while_its_child_is_linked_still_releases_it(
        tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL: a submit that has linked a child to a running parent holds the parent's
    row until it commits, so a finish of the parent that comes meanwhile waits, then sees
    the new edge and releases the child. (Without the lock, its release would run first,
    see no edge, and leave the child waiting for a parent that has already ended.)"""

    async def body(store: Store) -> None:
        (parent,) = await store.submit_many([new()])
        await claim_all(store)
        child_new = new(after=(parent.id,))
        (child,) = new_jobs([child_new])
        async with await psycopg.AsyncConnection.connect(pg_url) as linker, \
                await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as finisher:
            # The submit's transaction (PostgresStore._submit_linked), up to its commit.
            await linker.execute(pg_sql.SUBMIT, {"rows": pg_rows([child_new], [child])})
            await pg_link(linker, [child])
            finish = asyncio.ensure_future(finisher.execute(
                "UPDATE jobs SET status = 'succeeded', finished_at = 1 WHERE id = %s",
                (parent.id,)))
            while not await backend.query(store, "SELECT 1 FROM pg_stat_activity "
                                                 "WHERE wait_event_type = 'Lock'"):
                await asyncio.sleep(0.01)  # until the finish waits for the submit's lock
            await linker.commit()
            await finish
        assert (await state(store, child)).status is JobState.QUEUED
        assert await backend.query(store, "SELECT count(*) FROM job_deps") == [(0,)]

    backend = Backend("postgres", pg_url)
    run(tmp_path / "q.db", body, backend)


def test_a_chain_as_deep_as_allowed_cancels_whole_and_a_deeper_one_is_refused(
        tmp_path: Path, backend: Backend) -> None:
    """A failure cancels a chain level by level, a nested trigger each: the depth cap keeps
    the deepest chain allowed well inside what each store can nest (SQLite failed at 1,000
    levels, PostgreSQL between 300 and 1,000), so its root's finish never fails."""

    async def body(store: Store) -> None:
        ids = [new_job_id() for _ in range(MAX_DEPTH + 1)]
        await store.submit_many([new(id_=ids[0])] + [new(id_=ids[i], after=(ids[i - 1],))
                                                     for i in range(1, MAX_DEPTH + 1)])
        before = await store.counts()
        with pytest.raises(ValidationFailed) as caught:
            await store.submit_many([new(after=(ids[-1],))])
        assert (caught.value.code, caught.value.extra["limit"]) == ("dependency_too_deep",
                                                                    MAX_DEPTH)
        assert await store.counts() == before
        (claim,) = (await claim_all(store)).values()
        await end(store, claim, Ending.FAILED)
        assert (await store.counts())["cancelled"] == MAX_DEPTH

    run(tmp_path / "q.db", body, backend)


def test_pruning_and_purging_never_strand_a_child(tmp_path: Path, backend: Backend) -> None:
    """A final job's edges are gone when it ends, so retention can delete it with its
    children still to run; a child deleted first leaves an edge its parent's end skips."""

    async def body(store: Store) -> None:
        (parent,) = await store.submit_many([new()])
        (child,) = await store.submit_many([new(after=(parent.id,))])
        (claim,) = (await claim_all(store)).values()
        await end(store, claim, result="3")
        assert await store.prune(JobState.SUCCEEDED, time.time() + 1, 10) == 1
        assert await store.get("default", parent.id) is None
        (claim,) = (await claim_all(store)).values()
        assert claim.id == child.id and json.loads(claim.parents_json or "") == {}
        # A cancelled child pruned while its parent still runs: the parent ends cleanly.
        (other,) = await store.submit_many([new()])
        (gone,) = await store.submit_many([new(after=(other.id,))])
        await store.cancel("default", gone.id)
        assert await store.prune(JobState.CANCELLED, time.time() + 1, 10) == 1
        claims = await claim_all(store)
        await end(store, claims[other.id])
        assert (await state(store, other)).status is JobState.SUCCEEDED
        assert await backend.query(store, "SELECT count(*) FROM job_deps") == [(0,)]

    run(tmp_path / "q.db", body, backend)
