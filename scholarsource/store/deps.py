"""Dependencies between jobs as both stores link them at submit (schema _V18 says how
they are released); no SQL lives here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable

from scholarsource.errors import UnknownParent, ValidationFailed
from scholarsource.store.base import Artifact, Claim, Job


def links(jobs: list[Job]) -> list[tuple[str, str]]:
    """(child, parent) for every parent of the dependent `jobs`."""
    return [(job.id, parent) for job in jobs for parent in job.depends_on]


def links_json(jobs: list[Job]) -> str:
    """`links` as the JSON array of [child, parent] pairs the stores' statements read."""
    return json.dumps(links(jobs))


# The longest chain of parents a job may have above it. A failure cancels the waiting jobs
# below it level by level, each level a nested trigger: SQLite allows 1,000 levels and
# PostgreSQL ran out of stack between 300 and 1,000 (measured), so a deeper chain would make
# its root's finish fail every time. Not a setting: it is the stores' bound, with a margin.
MAX_DEPTH = 100


def depths(jobs: list[Job], found: Iterable[tuple[str, str, int]]) -> dict[str, int]:
    """Each of `jobs`' depth (1 + its deepest parent's), checking its parents: `found` are
    the (id, tenant, depth) rows of them the store has. Raises UnknownParent unless every
    parent is there in the job's own tenant (another tenant's job answers as an unknown id
    does), and ValidationFailed (dependency_too_deep) past MAX_DEPTH. A parent among `jobs`
    (a workflow's step) counts with the depth computed here."""
    stored = {job_id: (tenant, depth) for job_id, tenant, depth in found}
    for job in jobs:
        for parent in job.depends_on:
            if stored.get(parent, ("", 0))[0] != job.tenant:
                where = "depends_on" if job.step is None else f"steps.{job.step}.depends_on"
                raise UnknownParent(f"{where}: no job {parent!r}", field=where,
                                    parent=parent)
    batch = {job.id: job for job in jobs}
    computed: dict[str, int] = {}
    # Parents before children (the graph has no cycle: a workflow is checked for one first).
    pending = list(jobs)
    while pending:
        waiting = []
        for job in pending:
            if any(p in batch and p not in computed for p in job.depends_on):
                waiting.append(job)
                continue
            computed[job.id] = 1 + max(computed[p] if p in batch else stored[p][1]
                                       for p in job.depends_on)
        if len(waiting) == len(pending):
            raise ValueError("the jobs depend on each other in a cycle")
        pending = waiting
    for job in jobs:
        if computed[job.id] > MAX_DEPTH:
            where = "depends_on" if job.step is None else f"steps.{job.step}.after"
            raise ValidationFailed(f"{where}: {computed[job.id]} jobs deep, more than "
                                   f"{MAX_DEPTH} (a chain of parents that long would fail "
                                   f"to cancel)", code="dependency_too_deep", field=where,
                                   limit=MAX_DEPTH)
    return computed


async def with_parents(claims: list[Claim], rows: Iterable[tuple[str, str, list[str]]],
                       artifacts_of: Callable[[list[str]], Awaitable[dict[str, list[Artifact]]]]
                       ) -> list[Claim]:
    """Claims with their parents' results and artifacts. `rows` are the store's
    (claim id, {parent id: result} as JSON text, [parent id]) for the claims that have
    parents (a parent pruned since it ended is left out); `artifacts_of` is the store's
    Store.artifacts_of, asked once for every parent of the claims together."""
    found = {claim_id: (results, ids) for claim_id, results, ids in rows}
    parents = sorted({parent for _, ids in found.values() for parent in ids})
    files = await artifacts_of(parents) if parents else {}

    def placed(claim: Claim) -> Claim:
        results, ids = found.get(claim.id, ("{}", []))
        return dataclasses.replace(claim, parents_json=results, parent_artifacts={
            parent: files[parent] for parent in ids if parent in files})

    return [placed(claim) if claim.has_parents else claim for claim in claims]
