"""Dependencies between jobs as both stores link them at submit (schema _V_DEPS says how
they are released); no SQL lives here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from scholarsource.errors import UnknownParent
from scholarsource.store.base import Claim, Job


def links(jobs: list[Job]) -> list[tuple[str, str]]:
    """(child, parent) for every parent of the dependent `jobs`."""
    return [(job.id, parent) for job in jobs for parent in job.depends_on]


def links_json(jobs: list[Job]) -> str:
    """`links` as the JSON array of [child, parent] pairs the stores' statements read."""
    return json.dumps(links(jobs))


def check_parents(jobs: list[Job], found: Iterable[tuple[str, str]]) -> None:
    """Raise UnknownParent unless every parent of `jobs` is among `found` ((id, tenant)
    rows) in the job's own tenant. Another tenant's job answers as an unknown id does."""
    tenants = dict(found)
    for job in jobs:
        for parent in job.depends_on:
            if tenants.get(parent) != job.tenant:
                where = "depends_on" if job.step is None else f"steps.{job.step}.depends_on"
                raise UnknownParent(f"{where}: no job {parent!r}", field=where,
                                    parent=parent)


def with_parents(claims: list[Claim], results: dict[str, str]) -> list[Claim]:
    """Claims with their parents' results (`results`: claim id -> JSON object text; a
    parent pruned since it ended is left out)."""
    return [dataclasses.replace(claim, parents_json=results.get(claim.id, "{}"))
            if claim.has_parents else claim for claim in claims]
