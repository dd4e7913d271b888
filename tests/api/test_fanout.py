"""The event reader (api/fanout.py) on a real store: one statement per read for every feed,
each feed gets its job's events in order, a stalled feed is dropped without holding up the
others, feeds read as their tenant only, and the reader runs only while a feed is open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from scholarsource.api.fanout import EventReader, Feed
from scholarsource.store.base import Claim, Note, Store, Watch, Watched
from tests.store.test_sqlite import job, ok, run


class Counting:
    """Wraps a store's `watch` to record the watches of each statement."""

    def __init__(self, store: Store) -> None:
        self.calls: list[list[Watch]] = []
        self._watch = store.watch
        store.watch = self.watch  # type: ignore[method-assign]

    async def watch(self, watches: list[Watch], limit: int = 500) -> list[Watched]:
        self.calls.append(watches)
        return await self._watch(watches, limit)


async def _running(store: Store, n: int) -> list[Claim]:
    for i in range(n):
        await store.submit(job(f"t{i}"))
    return await store.claim("p", n, 30)


async def _logs(store: Store, claim: Claim, first: int, count: int) -> None:
    await store.note([Note(claim.id, claim.token, "log", {"message": str(i)})
                      for i in range(first, first + count)])


async def _drain(feed: Feed) -> list[int]:
    """Every seq the feed hands out until it closes."""
    seqs: list[int] = []
    while True:  # as the stream does: it ends once closed and drained
        batch = await feed.take(5)
        seqs += [e.seq for e in batch]
        if feed.closed and not batch:
            return seqs


def _go(tmp_path: Path, body: Callable[[Store], Awaitable[None]]) -> None:
    run(tmp_path / "q.db", body)


def test_every_feed_gets_its_jobs_events_in_order_from_one_statement_per_read(
        tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        counting = Counting(store)
        claims = await _running(store, 5)
        reader = EventReader(store, interval=0.01, capacity=1000)
        feeds = [reader.subscribe("default", claims[i % 5].id, 0) for i in range(50)]
        drains = [asyncio.ensure_future(_drain(feed)) for feed in feeds]
        for round_ in range(4):
            for claim in claims:
                await _logs(store, claim, round_ * 3, 3)
            await asyncio.sleep(0.02)  # let reads interleave with the writes
        await store.finish([ok(c.id, c.token) for c in claims], 3)
        seen = await asyncio.wait_for(asyncio.gather(*drains), 10)
        for feed, seqs in zip(feeds, seen, strict=True):
            assert seqs == [e.seq for e in await store.events("default", feed.job_id)]
            assert feed.ended and not feed.dropped
        # Feeds at one place in one job share a watch: never more watches than jobs.
        assert counting.calls and max(len(call) for call in counting.calls) <= 5
        assert reader.reads == len(counting.calls)

    _go(tmp_path, body)


def test_a_stalled_feed_is_dropped_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        (claim,) = await _running(store, 1)
        reader = EventReader(store, interval=0.01, capacity=5)
        stalled = reader.subscribe("default", claim.id, 0)
        reading = reader.subscribe("default", claim.id, 0)
        drain = asyncio.ensure_future(_drain(reading))
        for first in range(0, 12, 2):  # two at a time: a reading feed never holds 5
            await _logs(store, claim, first, 2)
            await asyncio.sleep(0.03)
        await store.finish([ok(claim.id, claim.token)], 3)
        everything = [e.seq for e in await store.events("default", claim.id)]
        assert await asyncio.wait_for(drain, 10) == everything  # never held up
        assert stalled.dropped and not stalled.ended
        kept = [e.seq for e in await stalled.take(0)]
        assert kept == everything[:5] and stalled.after == kept[-1]  # a full buffer, in order
        # Its client reconnects with Last-Event-ID = the last event it got.
        resumed = reader.subscribe("default", claim.id, kept[-1])
        assert kept + await asyncio.wait_for(_drain(resumed), 10) == everything

    _go(tmp_path, body)


def test_a_feed_reads_as_its_tenant_only(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        (claim,) = await _running(store, 1)
        await _logs(store, claim, 0, 3)
        reader = EventReader(store, interval=0.01, capacity=100)
        theirs = reader.subscribe("other", claim.id, 0)
        mine = reader.subscribe("default", claim.id, 0)
        assert await asyncio.wait_for(_drain(theirs), 10) == []
        assert theirs.ended  # looks like a job that is not there
        assert len(await mine.take(5)) >= 4 and not mine.closed  # submit, running, 3 logs
        reader.unsubscribe(mine)

    _go(tmp_path, body)


def test_the_reader_runs_only_while_a_feed_is_open(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        (claim,) = await _running(store, 1)
        reader = EventReader(store, interval=0.01, capacity=100)
        assert not reader.running
        feed = reader.subscribe("default", claim.id, 0)
        assert reader.running
        await feed.take(5)
        reader.unsubscribe(feed)
        async with asyncio.timeout(5):
            while reader.running:
                await asyncio.sleep(0.01)
        await _logs(store, claim, 0, 1)
        again = reader.subscribe("default", claim.id, feed.after)  # and starts again
        assert [e.data["message"] for e in await again.take(5)] == ["0"]
        reader.unsubscribe(again)
        await reader.close()

    _go(tmp_path, body)


def test_a_backlog_larger_than_the_buffer_arrives_as_fast_as_it_is_read(
        tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        (claim,) = await _running(store, 1)
        await _logs(store, claim, 0, 200)
        await store.finish([ok(claim.id, claim.token)], 3)
        # A tick of a minute: only the feed draining its buffer asks for the rest.
        reader = EventReader(store, interval=60, capacity=7)
        feed = reader.subscribe("default", claim.id, 0)
        seqs = await asyncio.wait_for(_drain(feed), 10)
        assert seqs == [e.seq for e in await store.events("default", claim.id)]
        assert feed.ended and not feed.dropped and reader.reads >= 200 / 7

    _go(tmp_path, body)
