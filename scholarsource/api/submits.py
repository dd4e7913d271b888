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

from scholarsource.api.tenancy import Principal
from scholarsource.errors import Conflict, StoreUnavailable, TooManyRequests
from scholarsource.quotas import Ask, QuotaPolicy
from scholarsource.store.admission import (
    KEPT_CHANGING,
    KEY_REUSED,
    Admission,
    Admitted,
    shares_commit,
)
from scholarsource.store.base import Job, NewJob, Reused, Store

MAX_BATCH = 256


def ask_of(principal: Principal) -> Ask:
    """Whose quotas a request's submits meet: its tenant's, and its API key's."""
    return Ask(principal.tenant, principal.key_id, principal.rate)


def _answer(admission: Admission, batch: bool) -> Admitted:
    """The admission, or the error that refuses it: 429 over a quota, 409 for a reused
    Idempotency-Key (in a batch, naming the job's index)."""
    if isinstance(admission, Admitted):
        return admission
    if admission.code == KEPT_CHANGING:
        raise StoreUnavailable(admission.message)
    if admission.code != KEY_REUSED:
        raise TooManyRequests(admission.message, code=admission.code,
                              headers=admission.headers)
    if batch and admission.index is not None:
        raise Conflict(f"jobs[{admission.index}]: {admission.message}", code=KEY_REUSED,
                       index=admission.index)
    raise Conflict(admission.message, code=KEY_REUSED)


class SubmitBatcher:
    """Collects submits from concurrent requests and inserts them together, each held to
    its quotas (store/admission.py) in the same transaction."""

    def __init__(self, store: Store, committed: Callable[[list[Job]], None],
                 policy: QuotaPolicy) -> None:
        self._store = store
        # Called once per committed batch: wakes the pool, logs the jobs.
        self._committed = committed
        self._policy = policy
        self._pending: list[tuple[Ask, NewJob, asyncio.Future[Admission]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, new: NewJob) -> tuple[Job, Reused | None]:
        """Insert `new` for its tenant; returns the job once its row is committed, and None
        (a new job) or why an existing job is returned instead (see Store.submit_once).
        Raises TooManyRequests over a quota."""
        return (await self.admit(Ask(new.tenant), [new])).jobs[0]

    async def admit(self, ask: Ask, news: list[NewJob], *, batch: bool = False) -> Admitted:
        """Insert `news` (one submit, or a `batch`: all or nothing) for `ask` once its
        quotas admit them; returns them once committed. Raises TooManyRequests over a
        quota, or Conflict for a reused Idempotency-Key, having written nothing."""
        if batch or not shares_commit(news):
            # Batches and jobs with parents go one by one: a refusal rolls their own
            # transaction back.
            admitted = _answer((await self._store.admit([(ask, news)], self._policy))[0],
                               batch)
            if admitted.new:
                self._committed(admitted.new)
            return admitted
        future: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._pending.append((ask, news[0], future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return _answer(await future, False)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    results = await self._store.admit([(ask, [new]) for ask, new, _ in batch],
                                                      self._policy)
                except Exception as exc:  # each waiting request answers with this error
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    made = [job for result in results if isinstance(result, Admitted)
                            for job in result.new]
                    if made:
                        self._committed(made)
                    for (_, _, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            self._flusher = None
