"""`Store.watch`: the one query per tick of an API worker's event reader, for every job its
streams follow: statuses and events after each stream's seq, one snapshot, one tenant each."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import Claim, JobState, Note, Store, Watch
from scholarsource.store.rows import watch_params
from scholarsource.store.sqlite import WATCH
from tests.store.backends import Backend
from tests.store.test_sqlite import job, ok, query_plan, run


def test_one_call_reads_every_watched_job_after_its_own_seq(tmp_path: Path,
                                                             backend: Backend) -> None:
    async def body(store: Store) -> None:
        first = await store.submit(job("a"))
        second = await store.submit(job("b"))
        theirs = await store.submit(job("c", tenant="other"))
        claims: dict[str, Claim] = {}
        while got := await store.claim("p", 3, 30):  # two tenants: one turn a claim
            claims.update((c.id, c) for c in got)
        assert len(claims) == 3
        await store.note([Note(first.id, claims[first.id].token, "log", {"message": str(i)})
                          for i in range(3)])
        await store.finish([ok(second.id, claims[second.id].token)], 3)
        history = await store.events("default", first.id)
        middle = history[-2].seq

        seen = await store.watch([
            Watch("default", first.id), Watch("default", first.id, middle),
            Watch("default", second.id), Watch("default", theirs.id),
            Watch("other", theirs.id), Watch("default", "no-such-job")])

        assert [w.status for w in seen] == [JobState.RUNNING, JobState.RUNNING,
                                            JobState.SUCCEEDED, None, JobState.RUNNING, None]
        assert seen[0].events == history  # the same events `events` reads, in order
        assert [e.seq for e in seen[1].events] == [history[-1].seq]
        assert [e.data["status"] for e in seen[2].events if e.kind == "state"][-1] == \
            "succeeded"
        assert {e.job_id for e in seen[2].events} == {second.id}
        assert seen[3].events == []  # another tenant's job: absent, no events
        assert [e.job_id for e in seen[4].events] == [theirs.id] * len(seen[4].events)
        assert seen[4].events and seen[5].events == []
        assert await store.watch([]) == []

    run(tmp_path / "q.db", body, backend)


def test_limit_caps_each_job_and_the_rest_follow_on_the_next_read(tmp_path: Path,
                                                                  backend: Backend) -> None:
    async def body(store: Store) -> None:
        chatty, quiet = await store.submit(job("a")), await store.submit(job("b"))
        claims = {c.id: c for c in await store.claim("p", 2, 30)}
        await store.note([Note(chatty.id, claims[chatty.id].token, "log", {"message": str(i)})
                          for i in range(10)])
        everything = [e.seq for e in await store.events("default", chatty.id)]
        after, read = 0, []
        while True:
            busy, calm = await store.watch([Watch("default", chatty.id, after),
                                            Watch("default", quiet.id)], limit=4)
            assert len(busy.events) <= 4 and calm.events  # one job's backlog starves none
            if not busy.events:
                break
            read += [e.seq for e in busy.events]
            after = busy.events[-1].seq
        assert read == everything and len(read) > 4

    run(tmp_path / "q.db", body, backend)


def test_the_sqlite_watch_walks_indexes_and_never_scans_events(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    try:
        plan = query_plan(conn, WATCH, {"watches": watch_params([Watch("t", "j")]),
                                        "limit": 500})
    finally:
        conn.close()
    # Only the watch list itself is scanned; jobs and events are index searches per watch
    # (the one sort is of the rows read, to put them in order).
    assert [step for step in plan.split(" | ") if step.startswith("SCAN")] == [
        "SCAN json_each VIRTUAL TABLE INDEX 1:"], plan
    assert "SEARCH e USING INDEX job_events_job (job_id=? AND seq>?)" in plan, plan
    assert "SEARCH j USING INDEX" in plan, plan
