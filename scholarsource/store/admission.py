"""Submits held to their quotas, in one transaction per call, the same on every store.

A store supplies the transaction (`QuotaTx`: its SQL); this module decides, with the
arithmetic of scholarsource/quotas.py. Two shapes of call:
- many groups (the API's group commit), each plain jobs or one job that looks first (an
  idempotency key, the cache, unique) with no parents: each group is checked before its
  insert, and a refused group writes nothing and is left out, alone. The plain ones go in
  with one INSERT; one that looks first is inserted unless it matches a job already there;
- one group of any jobs (a batch, or a job with parents): each that looks first is
  inserted unless it matches, the quotas count only the new ones, and a refusal rolls the
  whole transaction back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, cast

from scholarsource.errors import StoreUnavailable
from scholarsource.quotas import (
    Ask,
    Ledger,
    Level,
    QuotaPolicy,
    QuotaState,
    Verdict,
    bucket_names,
)
from scholarsource.store.base import Job, NewJob, Reused
from scholarsource.store.rows import new_jobs


@dataclass(frozen=True)
class Admitted:
    """A group went in: each job, and why an existing one answers instead (None: new)."""

    jobs: list[tuple[Job, Reused | None]]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def new(self) -> list[Job]:
        """The jobs this call created."""
        return [job for job, reused in self.jobs if reused is None]


@dataclass(frozen=True)
class Refused:
    """A group refused whole: nothing of it was written and no token taken. Over a quota
    (`code` rate_limited or quota_exceeded), (idempotency_key_reused) because the job at
    `index` carries a key the tenant used for another task or params, or (KEPT_CHANGING)
    because the job it matched kept changing: the submit may be sent again."""

    code: str
    message: str
    headers: dict[str, str]
    index: int | None = None


Admission = Admitted | Refused


class QuotaTx(Protocol):
    """One open write transaction of a store, as admission needs it."""

    async def state(self, tenants: list[str], buckets: list[str]) -> QuotaState:
        """Lock what the quotas of these tenants and buckets read, then read it."""

    async def insert(self, news: list[NewJob], jobs: list[Job]) -> None:
        """Insert plain jobs."""

    async def insert_once(self, new: NewJob, job: Job) -> bool:
        """Insert `job` unless an existing job answers `new`; True if inserted."""

    async def insert_new(self, news: list[NewJob], jobs: list[Job]) -> set[str]:
        """Insert each job unless a unique index holds its Idempotency-Key or live twin
        already (none of them looks in the cache); the ids inserted."""

    async def existing(self, new: NewJob, job: Job) -> tuple[Job, Reused] | None:
        """The existing job that answers `new` (job: the one not inserted), and why."""

    async def save(self, levels: dict[str, Level]) -> None:
        """Write the changed buckets back."""

    async def link(self, jobs: list[Job]) -> dict[str, Job]:
        """Link just-inserted dependent jobs to their parents (UnknownParent for a parent
        the tenant does not have); returns those that parents already final changed."""


KEY_REUSED = "idempotency_key_reused"
KEPT_CHANGING = "kept_changing"
_CHANGING = "the job this submit matched kept changing; send it again"


@dataclass(frozen=True)
class Guard:
    """When plain jobs need no transaction of their own: no bucket applies to them (no key
    rate, no tenant rate in the config) and, checked by the insert itself, none of their
    `tenants` has a rate or max_queued stored, each tenant in `caps` (its new jobs, its
    config max_queued) stays within its cap, and the server within `max_queued` with
    `total` more jobs."""

    tenants: list[str]
    caps: list[tuple[str, int, int]]
    total: int
    max_queued: int | None


# A store's one-statement insert of plain jobs that holds to a Guard: True if inserted,
# False if the guard failed (nothing written).
Quick = Callable[[list[NewJob], list[Job], Guard], Awaitable[bool]]


def _guard(groups: Sequence[tuple[Ask, list[NewJob]]], policy: QuotaPolicy) -> Guard | None:
    """The Guard under which `groups` may skip the quota transaction, if they may."""
    counts: dict[str, int] = {}
    for ask, news in groups:
        limits = policy.tenants.get(ask.tenant)
        if ask.key_rate is not None or (limits is not None and limits.rate is not None):
            return None
        counts[ask.tenant] = counts.get(ask.tenant, 0) + len(news)
    caps = [(tenant, n, cap) for tenant, n in sorted(counts.items())
            for cap in (getattr(policy.tenants.get(tenant), "max_queued", None),)
            if cap is not None]
    return Guard(sorted(counts), caps, sum(counts.values()), policy.max_queued)


class _Rollback(Exception):
    """Raised inside the transaction to undo a refused group."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.message)
        self.refused = refused


def _refused(verdict: Verdict) -> Refused:
    assert verdict.code is not None
    return Refused(verdict.code, verdict.message, verdict.headers)


async def admit(transaction: AbstractAsyncContextManager[QuotaTx],
                groups: Sequence[tuple[Ask, list[NewJob]]], policy: QuotaPolicy,
                quick: Quick | None = None, quick_rows: int = 0) -> list[Admission]:
    """Insert each group that its quotas admit, in order, in one transaction; returns each
    group's admission. Shielded: a cancelled caller never leaves the transaction open.

    With `quick` (a store's guarded one-statement insert of up to `quick_rows` jobs), plain
    jobs that no bucket concerns first try that: one round trip instead of a transaction
    of four or five; when its guard fails, the transaction decides, group by group."""
    news = [new for _, group in groups for new in group]
    guard = None if quick is None or len(news) > quick_rows or any(
        new.looks_first for new in news) else _guard(groups, policy)
    if quick is not None and guard is not None:
        jobs = new_jobs(news)
        # One statement, no transaction to leave open: no shield needed.
        if await quick(news, jobs, guard):
            made = iter(jobs)
            return [Admitted([(next(made), None) for _ in group]) for _, group in groups]
    return await asyncio.shield(_admit(transaction, groups, policy))


def shares_commit(news: Sequence[NewJob]) -> bool:
    """Whether a submit of `news` may share a transaction with others' (a group commit):
    plain jobs, or one job that looks first and has no parents. Its refusal then writes
    nothing without a rollback: the quotas are checked before its insert."""
    if not any(new.looks_first for new in news):
        return True
    return len(news) == 1 and not news[0].depends_on


async def _admit(transaction: AbstractAsyncContextManager[QuotaTx],
                 groups: Sequence[tuple[Ask, list[NewJob]]],
                 policy: QuotaPolicy) -> list[Admission]:
    shared = all(shares_commit(news) for _, news in groups)
    if not shared and len(groups) != 1:
        raise ValueError("a batch, or a job with parents, goes one group per call")
    tenants = sorted({ask.tenant for ask, _ in groups})
    buckets = sorted({name for ask, _ in groups for name in bucket_names(ask)})
    try:
        async with transaction as tx:
            ledger = Ledger(await tx.state(tenants, buckets), policy, time.time())
            if shared:
                admitted = await _shared_groups(tx, ledger, groups)
            else:
                admitted = [await _one_group(tx, ledger, *groups[0])]
            if ledger.changed:
                await tx.save(dict(ledger.changed))
            return admitted
    except _Rollback as rollback:
        return [rollback.refused]


async def _shared_groups(tx: QuotaTx, ledger: Ledger,
                         groups: Sequence[tuple[Ask, list[NewJob]]]) -> list[Admission]:
    results: list[Admission | None] = []
    news: list[NewJob] = []
    jobs: list[Job] = []
    unbounded: list[tuple[int, Ask, NewJob]] = []  # decided together, after the loop
    for ask, group in groups:
        if group[0].looks_first:
            if ledger.unbounded(ask) and not _cached(group[0]):
                unbounded.append((len(results), ask, group[0]))
                results.append(None)
            else:
                results.append(await _looked_up(tx, ledger, ask, group[0]))
            continue
        verdict = ledger.take(ask, len(group))
        if verdict.code is not None:
            results.append(_refused(verdict))
            continue
        made = new_jobs(group)
        news.extend(group)
        jobs.extend(made)
        results.append(Admitted([(job, None) for job in made], verdict.headers))
    if jobs:
        await tx.insert(news, jobs)
    if unbounded and ledger.room(len(unbounded)):
        await _unbounded(tx, ledger, unbounded, results)
    else:  # near the server's cap, each is checked in turn
        for index, ask, new in unbounded:
            results[index] = await _looked_up(tx, ledger, ask, new)
    assert None not in results
    return cast(list[Admission], results)


def _cached(new: NewJob) -> bool:
    return new.cache_ttl is not None and not new.bypass_cache


async def _unbounded(tx: QuotaTx, ledger: Ledger, lone: list[tuple[int, Ask, NewJob]],
                     results: list[Admission | None]) -> None:
    """Jobs that look first and that every quota admits (the server's cap has room for
    all), in one INSERT: only those it left out (a key used before, a live twin) look for
    the job that answers them."""
    made = new_jobs([new for _, _, new in lone])
    inserted = await tx.insert_new([new for _, _, new in lone], made)
    for (index, ask, new), job in zip(lone, made, strict=True):
        if job.id in inserted:
            results[index] = Admitted([(job, None)], ledger.take(ask, 1).headers)
        elif (found := await tx.existing(new, job)) is not None:
            results[index] = _key_conflict(new, *found, 0) or _reused(ledger, ask, found)
        else:  # what stopped it has changed since: alone, with its retries
            results[index] = await _looked_up(tx, ledger, ask, new)


async def _looked_up(tx: QuotaTx, ledger: Ledger, ask: Ask, new: NewJob) -> Admission:
    """One job that looks first, in a shared transaction: the quotas are checked as if it
    were new before it is inserted, so that a refusal has nothing to undo."""
    verdict = ledger.check(ask, 1)
    (job,) = new_jobs([new])
    for _ in range(3):
        if verdict.code is None and await tx.insert_once(new, job):
            return Admitted([(job, None)], ledger.take(ask, 1).headers)
        found = await tx.existing(new, job)
        if found is not None:
            return _key_conflict(new, *found, 0) or _reused(ledger, ask, found)
        if verdict.code is not None:
            return _refused(verdict)
        # The job that stopped the insert left its state (PostgreSQL: another transaction
        # committed in between): the insert may go through now.
    # This submit's own answer: the others sharing the transaction still go in.
    return Refused(KEPT_CHANGING, _CHANGING, {})


def _reused(ledger: Ledger, ask: Ask, found: tuple[Job, Reused]) -> Admitted:
    """An existing job answers: it takes nothing, and carries the quota headers all the
    same (as a batch's answer does)."""
    return Admitted([found], ledger.take(ask, 0).headers)


def _key_conflict(new: NewJob, old: Job, why: Reused, index: int,
                  earlier: int | None = None) -> Refused | None:
    """The refusal of a job whose Idempotency-Key the tenant used for another job: `old`, or
    (`earlier`) the item at that index of the same batch, which the refusal leaves unwritten."""
    if why is Reused.IDEMPOTENT and (old.task, old.params) != (new.task, new.params):
        other = old.id if earlier is None else f"jobs[{earlier}] of this batch"
        return Refused(KEY_REUSED, f"Idempotency-Key {new.idempotency_key!r} was used for "
                       f"another job, {other}", {}, index)
    return None


async def _one_group(tx: QuotaTx, ledger: Ledger, ask: Ask,
                     group: list[NewJob]) -> Admission:
    made = new_jobs(group)
    plain = [(new, job) for new, job in zip(group, made, strict=True) if not new.looks_first]
    if plain:
        await tx.insert([new for new, _ in plain], [job for _, job in plain])
    answers: list[tuple[Job, Reused | None]] = []
    for index, (new, job) in enumerate(zip(group, made, strict=True)):
        if not new.looks_first or await tx.insert_once(new, job):
            answers.append((job, None))
            continue
        # In this transaction the job that stopped the insert is still there, unless it
        # was deleted between the two statements.
        found = await tx.existing(new, job)
        if found is None:
            raise StoreUnavailable(_CHANGING)
        earlier = next((at for at, job in enumerate(made[:index]) if job.id == found[0].id),
                       None)
        if (conflict := _key_conflict(new, *found, index, earlier)) is not None:
            raise _Rollback(conflict)
        answers.append(found)
    linked = [job for (job, reused), new in zip(answers, group, strict=True)
              if reused is None and new.depends_on]
    if linked:  # after every insert: a workflow's step may depend on a later one
        changed = await tx.link(linked)
        answers = [(changed.get(job.id, job), reused) for job, reused in answers]
    verdict = ledger.take(ask, sum(1 for _, reused in answers if reused is None))
    if verdict.code is not None:
        raise _Rollback(_refused(verdict))
    return Admitted(answers, verdict.headers)
