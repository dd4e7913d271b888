"""store/admission.py's decisions when the store's answers race: a unit of the admission
logic over a transaction that scripts what a racing PostgreSQL could answer (the match that
stopped an insert is gone when looked up, every time)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from scholarsource.quotas import Ask, Level, QuotaPolicy, QuotaState
from scholarsource.store.admission import KEPT_CHANGING, Admitted, Refused, admit
from scholarsource.store.base import Job, NewJob, Reused
from tests.store.test_quotas import job


class _Racing:
    """Inserts plain jobs; a job that looks first is always stopped by a match that is gone
    by the time it is looked up."""

    def __init__(self) -> None:
        self.inserted: list[str] = []

    async def state(self, tenants: list[str], buckets: list[str]) -> QuotaState:
        return QuotaState({}, {}, {})

    async def insert(self, news: list[NewJob], jobs: list[Job]) -> None:
        self.inserted += [j.id for j in jobs]

    async def insert_once(self, new: NewJob, job: Job) -> bool:
        return False

    async def insert_new(self, news: list[NewJob], jobs: list[Job]) -> set[str]:
        return set()

    async def existing(self, new: NewJob, job: Job) -> tuple[Job, Reused] | None:
        return None

    async def save(self, levels: dict[str, Level]) -> None:
        pass

    async def link(self, jobs: list[Job]) -> dict[str, Job]:
        return {}


def test_a_keyed_submit_whose_match_keeps_changing_is_refused_alone() -> None:
    tx = _Racing()

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[_Racing]:
        yield tx

    results = asyncio.run(admit(transaction(), [(Ask("default"), [job(key="k")]),
                                                (Ask("default"), [job()])], QuotaPolicy()))
    keyed, plain = results
    assert isinstance(keyed, Refused) and keyed.code == KEPT_CHANGING
    assert isinstance(plain, Admitted) and tx.inserted == [plain.jobs[0][0].id]
