"""Retention: delete finished jobs once their state's age has passed, with their artifacts'
files, and give the space back.

The pool runs a `Pruner` as part of its housekeeping; `scholarsource prune` runs one to the
end. Work goes in batches, each one statement and so one write transaction, sized from
what deleting one job has cost lately so that a batch holds the write lock about
`BATCH_SECONDS`; after each one the pruner pauses about as long. SQLite's lock is not fair (a
waiting writer sleeps and retries), so batches back to back would starve the API's submits;
the pause lets a waiting writer in between two batches. In the pool, one `run` spends at most
`TURN_SECONDS`; a backlog (the first prune of a big history) is worked off over later turns.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from scholarsource.config import Retention
from scholarsource.errors import StoreUnavailable
from scholarsource.pool.artifacts import GRAVES_PER_TURN, Files
from scholarsource.store.base import JobState, Store

log = logging.getLogger("scholarsource.pool")

BATCH_SECONDS = 0.005  # the write lock one batch may hold, about
TURN_SECONDS = 0.05  # batches per `run` in the pool, in time
MAX_INTERVAL = 60.0  # prune at least this often, in seconds
MIN_BATCH, FIRST_BATCH, MAX_BATCH = 10, 200, 5000
PAGES_PER_STEP = 256  # pages one compact step gives back: 1 MiB at 4 KiB pages
# While a backlog remains, rest half the time just spent: pruning takes at most two thirds
# of the dispatcher's loop, half of that in pauses. With a full rest (half the loop) it fell
# behind a steady 3.4k jobs/s on 2 cores (bench/retention_soak.py): the commits also pay for
# the WAL checkpoints their deletes cause.
_REST = 0.5


@dataclass
class PruneReport:
    """What one run did (or, for a dry run, would do)."""

    deleted: dict[str, int] = field(default_factory=dict)  # final state -> jobs
    batches: int = 0
    longest_batch: float = 0.0  # seconds: the slowest batch statement (see Pruner._batch)
    compact_steps: int = 0
    done: bool = True  # False: the time budget ran out with work left, or the store refused
    error: str | None = None  # why the store refused (locked past busy_timeout, disk full)

    @property
    def total(self) -> int:
        """Jobs deleted in all states."""
        return sum(self.deleted.values())


class Pruner:
    """Deletes finished jobs older than their state's age; `due` says when to `run` again."""

    def __init__(self, retention: Retention, files: Files | None = None) -> None:
        self.ages = {JobState.SUCCEEDED: retention.succeeded,
                     JobState.CANCELLED: retention.cancelled, JobState.DEAD: retention.dead}
        # At least once a minute, and often enough that a job outlives its age by a tenth
        # at most: the table (and the file) swings by the jobs of one interval, so a short
        # retention under a heavy flow wants a short one. A run with nothing to delete is
        # three index probes.
        self.interval = min(MAX_INTERVAL, min(self.ages.values()) / 10)
        self.batch = FIRST_BATCH
        self._costs: deque[float] = deque(maxlen=5)  # seconds per deleted job, latest batches
        self._next = 0.0  # monotonic
        self._freed = False  # pruning freed pages that compact has not given back yet
        self._files = files  # where pruned jobs' artifacts are deleted (None: nowhere)

    def due(self, now: float) -> bool:
        """True when `run` has work to look for (`now` is time.monotonic())."""
        return now >= self._next

    async def run(self, store: Store, budget: float | None = TURN_SECONDS) -> PruneReport:
        """Prune and compact for at most `budget` seconds (None: until done). A store that
        refuses (locked, disk full) is logged and tried again at the next interval."""
        started = time.monotonic()
        report = PruneReport()
        try:
            report.done = await self._work(store, report, started, budget)
        except StoreUnavailable as exc:
            log.warning("cannot prune finished jobs now: %s", exc)
            report.done, report.error = False, str(exc)
            self._next = time.monotonic() + self.interval
            return report
        spent = time.monotonic() - started
        self._next = time.monotonic() + (self.interval if report.done else _REST * spent)
        if report.total:
            log.debug("pruned %d finished job(s) in %d batch(es), longest %.1f ms",
                      report.total, report.batches, report.longest_batch * 1000)
        return report

    async def _work(self, store: Store, report: PruneReport, started: float,
                    budget: float | None) -> bool:
        """Batches, then compact steps, until done (True) or out of budget (False)."""

        def spent() -> bool:
            return budget is not None and time.monotonic() - started >= budget

        now = time.time()
        for state, age in self.ages.items():
            full = True
            while full:
                if spent():
                    return False
                deleted, full = await self._batch(store, state, now - age, report)
                report.deleted[state.value] = report.deleted.get(state.value, 0) + deleted
                self._freed = self._freed or deleted > 0
        # The pruned jobs' files, after their rows (a grave outlives a crash in between).
        while self._files is not None and await self._files.bury(store) == GRAVES_PER_TURN:
            if spent():
                return False
        while self._freed:
            if spent():
                return False
            t0 = time.perf_counter()
            self._freed = await store.compact(PAGES_PER_STEP)
            report.compact_steps += 1
            await asyncio.sleep(time.perf_counter() - t0)
        return True

    async def _batch(self, store: Store, state: JobState, before: float,
                     report: PruneReport) -> tuple[int, bool]:
        """One DELETE, then a pause: how many it deleted, and whether it was full (more may
        be left).

        The next batch's size and this pause come from the median cost per job of the latest
        batches, not from this batch's time alone: a commit that crosses the WAL's size runs
        the automatic checkpoint on its own connection, which makes that statement slow
        (tens of ms) without holding the write lock."""
        limit = self.batch
        t0 = time.perf_counter()
        deleted = await store.prune(state, before, limit)
        took = time.perf_counter() - t0
        report.batches += 1
        report.longest_batch = max(report.longest_batch, took)
        if deleted:
            self._costs.append(took / deleted)
            cost = statistics.median(self._costs)
            self.batch = max(MIN_BATCH, min(MAX_BATCH, int(BATCH_SECONDS / cost)))
            await asyncio.sleep(min(took, deleted * cost))
        return deleted, deleted == limit

    async def count(self, store: Store) -> dict[str, int]:
        """How many jobs of each final state a run would delete now (a dry run)."""
        now = time.time()
        return {state.value: await store.count_expired(state, now - age)
                for state, age in self.ages.items()}
