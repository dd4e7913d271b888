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

from scholarsource.quotas import QuotaPolicy, QuotaState, effective
from scholarsource.store.base import ErrorCode, Job, JobState, NewJob, Outcome, Spawn, Store

CONTINUATION = "then"  # the key of a parent's continuation among its children's


def child_id(parent_id: str, key: int | str) -> str:
    """The id of the parent's child `key` (its n-th submit, or CONTINUATION): 128 bits,
    URL-safe, never starting with "-" (as store.rows.new_job_id)."""
    digest = hashlib.sha256(f"{parent_id}/{key}".encode()).digest()[:16]
    text = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return "A" + text[1:] if text.startswith("-") else text


def placed(spawns: Iterable[Spawn], workflows: dict[str, str],
           existing: set[str]) -> list[NewJob]:
    """The children to insert: those not `existing` already whose parent is among
    `workflows` (parent id -> its workflow id, for the parents that may still add
    children), in that workflow, each `depends_on` kept to the siblings that are `existing`
    or among these children."""
    news = [dataclasses.replace(spawn.job, workflow_id=workflows[spawn.parent_id])
            for spawn in spawns
            if spawn.parent_id in workflows and spawn.job.id not in existing]
    there = existing | {new.id for new in news if new.id is not None}
    return [new if all(p in there for p in new.depends_on)
            else dataclasses.replace(new, depends_on=tuple(p for p in new.depends_on
                                                           if p in there))
            for new in news]


def named(spawns: Iterable[Spawn]) -> list[str]:
    """Every job the spawns name, once: each child and the siblings it depends on."""
    return list(dict.fromkeys(job_id for spawn in spawns
                              for job_id in (spawn.job.id, *spawn.job.depends_on)
                              if job_id is not None))


def over_quota(news: Iterable[NewJob], state: QuotaState,
               policy: QuotaPolicy) -> dict[str, str]:
    """The children refused (id -> error), in order: each one admitted counts one more
    unfinished job of its tenant, and one that would pass its tenant's max_queued or the
    server's is refused, as a submit would be (quotas.Ledger; a child takes no rate)."""
    live, total = dict(state.live), sum(state.live.values())
    refused = {}
    for new in news:
        count = live.get(new.tenant, 0)
        tenant_cap = effective(state.overrides.get(new.tenant),
                               policy.tenants.get(new.tenant)).max_queued
        for cap, have, what in ((tenant_cap, count, f"tenant {new.tenant!r} may have"),
                                (policy.max_queued, total, "the server takes")):
            if cap is not None and have + 1 > cap:
                refused[new.id or ""] = ErrorCode.QUOTA_EXCEEDED.explain(
                    f"{what} at most {cap} jobs not yet finished")
                break
        else:
            live[new.tenant], total = count + 1, total + 1
    return refused


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
