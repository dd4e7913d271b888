"""The dispatcher and real slot processes, in-process, drained to a deterministic end."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

from scholarsource.config import Config, load_config
from scholarsource.pool.dispatcher import Dispatcher
from scholarsource.pool.slots import Slots, SlotSettings
from scholarsource.store import schema
from scholarsource.store.base import Claim, NewJob, Wake
from scholarsource.store.sqlite import SqliteStore


@contextlib.asynccontextmanager
async def running_slots(config: Config, count: int) -> AsyncIterator[tuple[SqliteStore, Slots]]:
    """A fresh store and `count` started slot processes, stopped and closed after."""
    schema.migrate(config.db_path)
    store = await SqliteStore.open(config.db_path)
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
