"""Fan-out from inside a task (ctx.submit, ctx.continue_with) as both stores write it; no
SQL lives here.

A child's id is derived from its parent's id and its place among the parent's submits (the
n-th ctx.submit of any attempt, or the continuation), so a retried attempt names the same
children again and the store inserts each id once ("insert or ignore"): a retry never
doubles a fan-out. The parent's id is random and shown only to its own tenant, so the
children's ids are as unguessable as any job's.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterable

from scholarsource.store.base import Job, JobState, NewJob, Outcome, Spawn, Store

CONTINUATION = "then"  # the key of a parent's continuation among its children's


def child_id(parent_id: str, key: int | str) -> str:
    """The id of the parent's child `key` (its n-th submit, or CONTINUATION): 128 bits,
    URL-safe, never starting with "-" (as store.rows.new_job_id)."""
    digest = hashlib.sha256(f"{parent_id}/{key}".encode()).digest()[:16]
    text = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return "A" + text[1:] if text.startswith("-") else text


def placed(spawns: Iterable[Spawn], workflows: dict[str, str],
           existing: set[str]) -> list[NewJob]:
    """The children to insert: those whose parent is among `workflows` (parent id -> its
    workflow id, for the parents that may still add children), in that workflow, each
    `depends_on` kept to the siblings that are `existing` or among these children."""
    news = [dataclasses.replace(spawn.job, workflow_id=workflows[spawn.parent_id])
            for spawn in spawns if spawn.parent_id in workflows]
    there = existing | {new.id for new in news if new.id is not None}
    return [new if all(p in there for p in new.depends_on)
            else dataclasses.replace(new, depends_on=tuple(p for p in new.depends_on
                                                           if p in there))
            for new in news]


def siblings(spawns: Iterable[Spawn]) -> list[str]:
    """Every job the children depend on, once."""
    return list(dict.fromkeys(p for spawn in spawns for p in spawn.job.depends_on))


def continuations(outcomes: Iterable[Outcome], states: dict[str, JobState]) -> list[Spawn]:
    """The continuations of the `outcomes` whose success a finish recorded (`states`)."""
    return [Spawn(o.job_id, o.token, o.then) for o in outcomes
            if o.then is not None and states.get(o.job_id) is JobState.SUCCEEDED]


async def root_cancelled(store: Store, tenant: str, job: Job | None) -> Job | None:
    """After a cancel of `job`: if its task fanned out (the root of its own workflow), cancel
    the tree too, every unfinished descendant and continuation. The root was flagged first,
    so from then on it adds no child (Store.spawn) and no continuation (Store.finish)."""
    if job is not None and job.workflow_id == job.id:
        await store.cancel_workflow(tenant, job.id)
    return job
