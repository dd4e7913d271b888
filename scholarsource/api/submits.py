"""Group commit for submits: requests that arrive while one insert is in flight share the
next one.

Each submit still returns only after its row is committed. Under load, one aiosqlite round
trip and one write transaction carry many jobs instead of one each, which cuts the API's CPU
per submit and the number of writers queueing for SQLite's single write lock. An idle
server pays nothing extra: a lone submit is flushed on the next turn of the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from scholarsource.store.base import Job, NewJob, Reused, Store

MAX_BATCH = 256


class SubmitBatcher:
    """Collects submits from concurrent requests and inserts them together."""

    def __init__(self, store: Store, committed: Callable[[list[Job]], None]) -> None:
        self._store = store
        # Called once per committed batch: wakes the pool, logs the jobs.
        self._committed = committed
        self._pending: list[tuple[NewJob, asyncio.Future[Job]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, new: NewJob) -> tuple[Job, Reused | None]:
        """Insert `new`; returns the job once its row is committed, and None (a new job)
        or why an existing job is returned instead (see Store.submit_once)."""
        if new.looks_first:
            # Keyed, cached and unique submits go one by one: each looks for its match.
            job, reused = await self._store.submit_once(new)
            if reused is None:
                self._committed([job])
            return job, reused
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._pending.append((new, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future, None

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    jobs = await self._store.submit_many([new for new, _ in batch])
                except Exception as exc:  # each waiting request answers with this error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    self._committed(jobs)
                    for (_, future), job in zip(batch, jobs, strict=True):
                        if not future.done():
                            future.set_result(job)
        finally:
            self._flusher = None
