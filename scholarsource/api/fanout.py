"""One reader of job events per API worker, fanned out to every event stream it serves.

An SSE stream subscribes here (a `Feed`) instead of polling the store itself. Every
`interval`, and at once when a stream opens, the reader reads every watched job in one
`Store.watch` statement and appends to each feed the events after its own last one, in
order. Feeds at the same place in the same job share one watch (feeds of one job converge
after their first read), so a thousand viewers cost one short query per tick per worker.

A feed holds at most `capacity` events; a read hands it what fits and later reads the rest
(a long history arrives in pieces). One still full when more events arrive has a client that
stopped reading: it is closed after the events it holds, and its client resumes with
Last-Event-ID (browsers reconnect by themselves); the reader never waits for a client. It
runs only while a feed is open, and reads each feed as its stream's tenant only.

It polls rather than waking on the store's wake-ups: SQLite's datagram goes to the one pool
of a data directory, not to every API worker, and a PostgreSQL NOTIFY per event-writing
transaction would serialize the pool's commits (NOTIFY takes a global lock at commit). A
tick costs ~8 µs per stream (bench/README.md), and events arrive within one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from scholarsource.errors import StoreUnavailable
from scholarsource.metrics.counters import EVENT_READS, EVENT_STREAMS, EVENT_STREAMS_DROPPED
from scholarsource.store.base import Event, Store, Watch, Watched

log = logging.getLogger("scholarsource.api")

# Events read per job and read: a long history arrives over several ticks, and one job's
# backlog never makes the statement large for the others.
READ_LIMIT = 500
# The least time between two reads: streams that open at once (a page of viewers) and feeds
# catching up share a read instead of making one each.
MIN_GAP = 0.01


class Feed:
    """One stream's subscription: its job, the tenant it reads as, its buffered events."""

    def __init__(self, tenant: str, job_id: str, after: int, capacity: int,
                 more: Callable[[], None]) -> None:
        self.tenant, self.job_id = tenant, job_id
        self.after = after  # the last event handed to this feed
        self._capacity = capacity
        self._more = more  # asks the reader for the rest once a full buffer is drained
        self._behind = False  # the last read had more than fitted
        self._buffer: deque[Event] = deque()
        self._ready = asyncio.Event()
        self.ended = False  # the job is final (or gone) and its every event is buffered
        self.dropped = False  # it fell behind by more than `capacity`: it closes

    @property
    def closed(self) -> bool:
        """No more events will come: the stream ends once the buffer is drained."""
        return self.ended or self.dropped

    def watch(self) -> Watch:
        """Where this feed stands, as the store reads it."""
        return Watch(self.tenant, self.job_id, self.after)

    def deliver(self, events: list[Event], ended: bool, more: bool) -> None:
        """Append what the reader saw after `after`, as much as fits (later reads bring the
        rest); `ended`: nothing comes after `events`; `more`: the read stopped at its limit,
        so more may follow at once. A feed still full when more events arrive has a client
        that stopped reading: it is dropped."""
        room = self._capacity - len(self._buffer)
        if events and room == 0:
            self.dropped = True
        else:
            taken = events[:room]
            self._buffer.extend(taken)
            if taken:
                self.after = taken[-1].seq
            self._behind = more or len(taken) < len(events)
            self.ended = ended and len(taken) == len(events)
        if self._buffer or self.closed:
            self._ready.set()

    def fail(self) -> None:
        """Close the feed after what it holds (the reader cannot go on)."""
        self.dropped = True
        self._ready.set()

    async def take(self, timeout: float) -> list[Event]:
        """Every buffered event, waiting up to `timeout` seconds for one (then [])."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        events = list(self._buffer)
        self._buffer.clear()
        if not self.closed:
            self._ready.clear()
        if self._behind:  # catching up: read the rest now, not at the next tick
            self._behind = False
            self._more()
        return events


class EventReader:
    """The worker's one reader: subscribe a feed per stream, unsubscribe it at the end."""

    def __init__(self, store: Store, *, interval: float, capacity: int,
                 limit: int = READ_LIMIT) -> None:
        self._store, self._interval = store, interval
        # No feed takes more than its buffer holds from one read: read no more.
        self._capacity, self._limit = capacity, min(limit, capacity)
        self._feeds: set[Feed] = set()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # statements run, for tests and the bench

    @property
    def running(self) -> bool:
        """Whether the reader is reading (only while a feed is open)."""
        return self._task is not None

    def subscribe(self, tenant: str, job_id: str, after: int) -> Feed:
        """A feed of `job_id`'s events after `after`, read as `tenant`; read at once."""
        feed = Feed(tenant, job_id, after, self._capacity, self._kick.set)
        self._feeds.add(feed)
        EVENT_STREAMS.inc()
        self._kick.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return feed

    def unsubscribe(self, feed: Feed) -> None:
        """Forget `feed` (its stream ended or its client left)."""
        if feed in self._feeds:
            self._feeds.discard(feed)
            EVENT_STREAMS.dec()

    async def close(self) -> None:
        """Stop reading (the worker is shutting down)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        try:
            while self._feeds:
                self._kick.clear()
                await self._read_once()
                await asyncio.sleep(MIN_GAP)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._interval - MIN_GAP)):
                        await self._kick.wait()
        finally:
            self._task = None  # no await after the loop's last check: a new feed restarts it

    async def _read_once(self) -> None:
        groups: dict[Watch, list[Feed]] = {}
        for feed in self._feeds:
            groups.setdefault(feed.watch(), []).append(feed)
        watches = list(groups)
        try:
            seen = await self._store.watch(watches, self._limit)
        except StoreUnavailable:
            return  # read again at the next tick; the streams send keep-alives meanwhile
        except Exception:
            log.exception("the event reader failed; closing its streams (clients resume)")
            for feed in list(self._feeds):
                feed.fail()
                self.unsubscribe(feed)
            return
        finally:
            self.reads += 1
            EVENT_READS.inc()
        for watch, watched in zip(watches, seen, strict=True):
            ended = self._ended(watched)
            for feed in groups[watch]:
                if feed not in self._feeds:
                    continue  # its stream ended while the statement ran
                feed.deliver(watched.events, ended, len(watched.events) >= self._limit)
                if feed.closed:
                    if feed.dropped:
                        EVENT_STREAMS_DROPPED.inc()
                    self.unsubscribe(feed)

    def _ended(self, watched: Watched) -> bool:
        """Whether a job has nothing more to say: gone, or final with its history read to
        the end (in the same snapshot as its status)."""
        if watched.status is None:
            return True
        return watched.status.final and len(watched.events) < self._limit
