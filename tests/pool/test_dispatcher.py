"""The dispatcher and real slot processes, in-process, drained to a deterministic end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import threading
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import pytest

from scholarsource.config import Config, load_config
from scholarsource.errors import StoreUnavailable
from scholarsource.pool.dispatcher import Dispatcher
from scholarsource.pool.messages import Ended, Report, send
from scholarsource.pool.slots import Slot, Slots, SlotSettings
from scholarsource.store import schema
from scholarsource.store.base import Claim, JobState, NewJob, Store, Wake
from scholarsource.store.sqlite import SqliteStore
from tests.store.backends import Backend


@pytest.fixture(params=["inline", "postgres"])
def pool_backend(request: pytest.FixtureRequest) -> Backend:
    """The stores a pool runs on: SQLite through its inline driver, and PostgreSQL (whose
    batch is no transaction)."""
    if request.param == "postgres":
        return Backend("postgres", request.getfixturevalue("pg_url"))
    return Backend("inline")


@contextlib.asynccontextmanager
async def running_slots(config: Config, count: int,
                        backend: Backend | None = None) -> AsyncIterator[tuple[Store, Slots]]:
    """A fresh store (SQLite through aiosqlite unless `backend`) and `count` started slot
    processes, stopped and closed after."""
    store: Store
    if backend is None:
        schema.migrate(config.db_path)
        store = await SqliteStore.open(config.db_path)
    else:
        store = await backend.open(config.db_path)
    slots = Slots(count, SlotSettings.of(config))
    slots.start()
    try:
        await slots.started()
        yield store, slots
    finally:
        slots.stop(kill=True)
        await store.close()


def test_drain_runs_every_queued_job_and_records_results(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"data_dir": str(tmp_path), "poll_interval": "0.05"})

    async def main() -> None:
        async with running_slots(config, 2) as (store, slots):
            ok = [await store.submit(NewJob("echo", {"i": i}, "default", 0, 1))
                  for i in range(20)]
            bad = await store.submit(NewJob("fail", {"message": "x"}, "default", 0, 2,
                                            backoff_base=0.01, backoff_max=0.01))
            typo = await store.submit(NewJob("sleep", {"secs": 1}, "default", 0, 1))
            await Dispatcher(config, store, slots, owner="test").drain()
            for i, submitted in enumerate(ok):
                job = await store.get("default", submitted.id)
                assert job is not None and (job.status, job.result) == ("succeeded", {"i": i})
            failed = await store.get("default", bad.id)
            assert failed is not None and (failed.status, failed.attempts) == ("dead", 2)
            assert failed.error_code == "task_error"
            wrong = await store.get("default", typo.id)
            assert wrong is not None and wrong.status == "dead"
            assert "unexpected keyword argument 'secs'" in (wrong.error or "")

    asyncio.run(main())


async def one_idle_slot(config: Config) -> tuple[SqliteStore, Slots, Dispatcher]:
    """A store and a dispatcher of one slot whose process is not started."""
    schema.migrate(config.db_path)
    store = await SqliteStore.open(config.db_path)
    slots = Slots(1, SlotSettings.of(config))
    return store, slots, Dispatcher(config, store, slots, owner="test")


def test_a_new_job_wakes_the_loop_only_when_a_slot_could_take_it(tmp_path: Path) -> None:
    # Under load every batch of submits sends a hint; with every slot busy, a turn for it
    # would claim nothing (the end of an attempt wakes the loop and claims).
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        store, slots, dispatcher = await one_idle_slot(config)
        try:
            dispatcher.hint({Wake.SUBMITTED})
            assert dispatcher._wake.is_set()
            dispatcher._wake.clear()
            slots.all[0].claim = cast(Claim, object())  # the one slot is busy
            dispatcher.hint({Wake.SUBMITTED})
            assert not dispatcher._wake.is_set()
            dispatcher.hint({Wake.SUBMITTED, Wake.CANCELLED})  # a cancel is for busy slots
            assert dispatcher._wake.is_set()
        finally:
            await store.close()

    asyncio.run(main())


def test_the_pool_renews_what_it_answers_for_and_lets_a_lost_claim_expire(
        tmp_path: Path) -> None:
    # Held: a slot's job, an ended attempt not written yet, and one interrupted at shutdown
    # not yet re-queued. Lost: a job claimed for this owner whose claim never reached a slot.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path), "max_crashes": "3"})

    async def main() -> None:
        store, slots, dispatcher = await one_idle_slot(config)
        try:
            await store.submit_many([NewJob("noop", {}, "default", 0, 3) for _ in range(4)])
            running, ended, interrupted, lost = await store.claim("test", 4, 30)
            slots.all[0].claim = running
            dispatcher._ran[(ended.id, ended.token)] = (ended, 0.0)
            dispatcher._interrupted.append((interrupted.id, interrupted.token))
            await store._db.fetchall("UPDATE jobs SET lease_until = 1")  # time passes
            await dispatcher._renew(0.0)
            states = {c.id: (await store.get("default", c.id)) for c in
                      (running, ended, interrupted, lost)}
            assert {job_id: (job.status, job.crashes) for job_id, job in states.items()
                    if job is not None} == {
                running.id: ("running", 0), ended.id: ("running", 0),
                interrupted.id: ("running", 0), lost.id: ("queued", 0)}  # never ran: uncharged
        finally:
            slots.all[0].claim = None
            await store.close()

    asyncio.run(main())


def test_a_stop_lists_what_it_hands_back_until_the_requeue_is_written(tmp_path: Path) -> None:
    # The list is there from the moment the stop begins (a pool killed during its grace
    # leaves it), and gone once the attempts are re-queued.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path), "poll_interval": "0.05"})
    handback = tmp_path / "pool.handback"

    async def main() -> None:
        async with running_slots(config, 1) as (store, slots):
            job = await store.submit(NewJob("sleep", {"seconds": 30}, "default", 0, 1))
            dispatcher = Dispatcher(config, store, slots, owner="test")
            runner = asyncio.ensure_future(dispatcher.run())

            async def started() -> None:
                while not slots.busy():
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(started(), 10)
            claim = slots.busy()[0].claim
            assert claim is not None
            dispatcher.stop(60)
            assert json.loads(handback.read_text()) == [[job.id, claim.token]]
            dispatcher.stop(0)  # the grace is over
            await runner
            assert not handback.exists()
            after = await store.get("default", job.id)
            assert after is not None and (after.status, after.crashes) == ("queued", 0)

    asyncio.run(main())


def _slot_of(slots: Slots, job_id: str) -> Slot:
    return next(s for s in slots.all if s.claim is not None and s.claim.id == job_id)


def test_a_turn_writes_every_ending_that_came_and_restarts_their_slots_in_one_batch(
        tmp_path: Path, pool_backend: Backend) -> None:
    # Two slots on short jobs: the loop read one slot's ending, and the other's is in its
    # pipe too. The turn writes both and starts both slots' next jobs, in one batch.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        async with running_slots(config, 2, pool_backend) as (store, slots):
            first = [await store.submit(NewJob("echo", {"i": i}, "default", 0, 1))
                     for i in range(2)]
            later = [await store.submit(NewJob("sleep", {"seconds": 30}, "default", 0, 1))
                     for _ in range(2)]
            dispatcher = Dispatcher(config, store, slots, owner="test")
            await dispatcher._write(claim=True)  # no loop reads the pipes: this test does
            a, b = (_slot_of(slots, job.id) for job in first)
            assert a.conn is not None and b.conn is not None
            assert a.conn.poll(10) and b.conn.poll(10)  # both have ended
            dispatcher._read(a)  # what the loop does as a's pipe turns readable
            batches = 0
            batch = store.batch

            def counted() -> contextlib.AbstractAsyncContextManager[None]:
                nonlocal batches
                batches += 1
                return batch()

            store.batch = counted  # type: ignore[method-assign]
            await dispatcher._write(claim=True)
            assert batches == 1
            for job in first:
                done = await store.get("default", job.id)
                assert done is not None and done.status == "succeeded"
            assert {s.claim.id for s in slots.busy() if s.claim} == {j.id for j in later}

    asyncio.run(main())


async def _ends_during_the_turn(store: Store, slot: Slot,
                                *messages: Report | Ended) -> Connection:
    """`slot`'s process sends `messages` while the next turn writes its first ending: in its
    place a pipe the test holds the other end of (the process runs on, unheard, and what
    the pool sends next goes to the test); returns that end."""
    slot.conn, sender = multiprocessing.Pipe()
    finish = store.finish

    async def finish_then_send(*args: Any) -> dict[str, JobState]:
        states = await finish(*args)
        for message in messages:
            send(sender, message)
        store.finish = finish  # type: ignore[method-assign]
        return states

    store.finish = finish_then_send  # type: ignore[method-assign]
    return sender


@contextlib.asynccontextmanager
async def one_ended_one_running(
        config: Config,
        backend: Backend) -> AsyncIterator[tuple[Store, Slots, Dispatcher, Slot, list[str]]]:
    """Two slots: one's short job ended and the loop read its ending; slot `b` runs the first
    of three long jobs (their ids), the other two queued."""
    async with running_slots(config, 2, backend) as (store, slots):
        quick = await store.submit(NewJob("echo", {}, "default", 0, 1))
        jobs = [await store.submit(NewJob("sleep", {"seconds": 30}, "default", 0, 1))
                for _ in range(3)]
        dispatcher = Dispatcher(config, store, slots, owner="test")
        await dispatcher._write(claim=True)
        a, b = _slot_of(slots, quick.id), _slot_of(slots, jobs[0].id)
        assert a.conn is not None and a.conn.poll(10)
        dispatcher._read(a)
        dispatcher._wake.clear()  # as each turn begins
        yield store, slots, dispatcher, b, [job.id for job in jobs]


def test_an_ending_that_comes_while_a_turn_writes_is_taken_in_before_its_claim(
        tmp_path: Path, pool_backend: Backend) -> None:
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        async with one_ended_one_running(config, pool_backend) as (
                store, slots, dispatcher, b, jobs):
            assert b.claim is not None
            sender = await _ends_during_the_turn(store, b, Ended(b.claim.token, None, '"late"'))
            await dispatcher._write(claim=True)
            done = await store.get("default", jobs[0])
            assert done is not None and (done.status, done.result) == ("succeeded", "late")
            assert {s.claim.id for s in slots.busy() if s.claim} == set(jobs[1:])
            assert not dispatcher._outcomes and not dispatcher._wake.is_set()
            # The loop may still hold the readiness of b's pipe from before the turn read it:
            # that read must not block on the now empty pipe.
            reader = threading.Thread(target=dispatcher._read, args=(b,))
            reader.start()
            reader.join(10)
            blocked = reader.is_alive()
            sender.close()  # a blocked read ends (EOF) and the thread with it
            reader.join()
            assert not blocked

    asyncio.run(main())


def test_an_ending_taken_in_late_waits_for_its_progress_to_be_written_first(
        tmp_path: Path, pool_backend: Backend) -> None:
    # A job's progress and its end come together while a turn writes. Its end is written in
    # the next turn, after the progress (written after the end, the progress of a finished
    # job is dropped), and its slot takes no job until then.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        async with one_ended_one_running(config, pool_backend) as (
                store, slots, dispatcher, b, jobs):
            assert b.claim is not None
            token = b.claim.token
            await _ends_during_the_turn(
                store, b, Report(jobs[0], token, "progress", {"fraction": 0.5}),
                Ended(token, None, "{}"))
            await dispatcher._write(claim=True)
            assert not b.busy and [s.claim.id for s in slots.busy() if s.claim] == [jobs[1]]
            kept = await store.get("default", jobs[0])
            assert kept is not None and kept.status == "running"
            assert dispatcher._wake.is_set()  # the next turn comes for it
            await dispatcher._write(claim=True)  # the next turn: the progress, then the end
            done = await store.get("default", jobs[0])
            assert done is not None and done.status == "succeeded"
            assert "progress" in [event.kind for event in await store.events("default", jobs[0])]
            assert {s.claim.id for s in slots.busy() if s.claim} == set(jobs[1:])

    asyncio.run(main())


def test_a_refused_late_finish_still_reports_the_endings_already_written(
        tmp_path: Path, pool_backend: Backend) -> None:
    # The turn's first finish is written; the late one is refused. On PostgreSQL, whose batch
    # is no transaction, the first stays written: its job line (and metrics) come now, since
    # the next turn's write of the same ending is fenced out and reports nothing. On SQLite
    # the whole batch rolls back and the next turn writes and reports both.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        async with one_ended_one_running(config, pool_backend) as (
                store, slots, dispatcher, b, jobs):
            assert b.claim is not None
            reported: list[str] = []
            ended = dispatcher.journal.ended

            def journal(claim: Claim, *rest: Any) -> None:
                reported.append(claim.id)
                ended(claim, *rest)

            dispatcher.journal.ended = journal  # type: ignore[method-assign]
            b.conn, sender = multiprocessing.Pipe()  # b's process runs on, unheard
            finish, calls = store.finish, 0

            async def late_and_refused(*args: Any) -> dict[str, JobState]:
                nonlocal calls
                calls += 1
                if calls == 2:  # the late finish
                    raise StoreUnavailable("refused mid-batch")
                states = await finish(*args)
                send(sender, Ended(token, None, '"late"'))
                return states

            token = b.claim.token
            store.finish = late_and_refused  # type: ignore[method-assign]
            await dispatcher._write(claim=True)
            store.finish = finish  # type: ignore[method-assign]
            await dispatcher._write(claim=True)
            assert len(reported) == 2 and len(set(reported)) == 2 and jobs[0] in reported
            for job_id in reported:
                done = await store.get("default", job_id)
                assert done is not None and done.status == "succeeded"

    asyncio.run(main())


def test_a_slot_retired_by_an_ending_read_in_a_turn_is_replaced_by_the_next_turn(
        tmp_path: Path) -> None:
    # With max_jobs_per_slot = 1 the ending retires its slot's process; the housekeeping of
    # the next turn replaces it, so the turn keeps the loop awake for it.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path),
                                            "max_jobs_per_slot": "1"})

    async def main() -> None:
        async with one_ended_one_running(config, Backend("inline")) as (
                store, slots, dispatcher, b, jobs):
            await dispatcher._housekeeping()  # the first slot, retired, is replaced
            assert b.claim is not None
            await _ends_during_the_turn(store, b, Ended(b.claim.token, None, '"late"'))
            await dispatcher._write(claim=True)
            assert b.retire and not b.busy and dispatcher._wake.is_set()

    asyncio.run(main())


def test_a_stop_signal_midway_through_an_ending_still_lists_that_attempt(
        tmp_path: Path) -> None:
    # The stop signal's own handler runs between any two bytecodes: here, once the slot let
    # go of its attempt and before the attempt is recorded as ended. A second TERM landing
    # there must not drop the attempt from the list the first stop wrote.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        async with running_slots(config, 1, Backend("inline")) as (store, slots):
            job = await store.submit(NewJob("echo", {}, "default", 0, 1))
            dispatcher = Dispatcher(config, store, slots, owner="test")
            await dispatcher._write(claim=True)
            (slot,) = slots.all
            assert slot.claim is not None and slot.conn is not None and slot.conn.poll(10)
            pair = (job.id, slot.claim.token)
            dispatcher.stop(60)  # the first TERM's stop lists it
            assert dispatcher.handback.read() == [pair]
            complete, listed = slot.complete, []

            def complete_then_signalled(token: int, recycle_after: int) -> Claim | None:
                claim = complete(token, recycle_after)
                dispatcher.signalled()  # the second TERM lands here
                listed.append(dispatcher.handback.read())
                return claim

            slot.complete = complete_then_signalled  # type: ignore[method-assign]
            dispatcher._read(slot)
            assert listed == [[pair]]

    asyncio.run(main())


def test_an_ending_of_an_attempt_already_taken_back_leaves_nothing_listed(
        tmp_path: Path) -> None:
    # A slot's late report of an attempt the pool already took back (a stop's re-queue)
    # changes nothing: once that re-queue is written, the pool answers for nothing, so a
    # clean stop leaves no pool.handback behind.
    config = load_config(env={}, overrides={"data_dir": str(tmp_path)})

    async def main() -> None:
        async with running_slots(config, 1, Backend("inline")) as (store, slots):
            await store.submit(NewJob("sleep", {"seconds": 30}, "default", 0, 1))
            dispatcher = Dispatcher(config, store, slots, owner="test")
            await dispatcher._write(claim=True)
            (slot,) = slots.all
            assert slot.claim is not None
            stale = slot.claim.token + 1
            dispatcher._completed(slot, Ended(stale, None, "{}"))  # not its attempt
            await dispatcher._requeue_running()
            assert dispatcher._held() == []

    asyncio.run(main())
