"""POST /api/workflows' body as the jobs it creates: every step validated as a submit, its
`after` names resolved to the job ids drawn for them, and the whole graph checked for
cycles, all before anything is written."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from scholarsource.errors import ApiError, ValidationFailed
from scholarsource.limits import NAME_PATTERN
from scholarsource.store.base import NewJob
from scholarsource.store.rows import new_job_id

# One step's body as a job (a submit's validation); the caller binds the request.
ParseStep = Callable[[dict[str, Any]], Awaitable[NewJob]]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated workflow: its id, each step's job id, and the jobs to insert."""

    id: str
    steps: dict[str, str]
    jobs: list[NewJob]


def _steps(body: Any, max_steps: int) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != {"steps"} or \
            not isinstance(body["steps"], dict):
        raise ValidationFailed('the body must be {"steps": {NAME: submit body, ...}}',
                               field="steps")
    steps: dict[str, Any] = body["steps"]
    if not steps:
        raise ValidationFailed("steps: at least one step", field="steps")
    if len(steps) > max_steps:
        raise ValidationFailed(f"steps: {len(steps)} steps, more than max_workflow_steps "
                               f"({max_steps})", code="too_many_steps", limit=max_steps)
    for name, step in steps.items():
        if not NAME_PATTERN.fullmatch(name):
            raise ValidationFailed(f"steps: {name[:80]!r} is not a step name (1-64 letters, "
                                   f"digits, '_', '.', ':' or '-')", field="steps")
        if not isinstance(step, dict):
            raise ValidationFailed(f"steps.{name}: must be a submit body, a JSON object",
                                   field=f"steps.{name}")
    return steps


def _after(name: str, step: dict[str, Any], steps: dict[str, Any]) -> list[str]:
    after = step.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise ValidationFailed(f"steps.{name}.after: must be a list of step names",
                               field=f"steps.{name}.after")
    for other in after:
        if other not in steps:
            raise ValidationFailed(f"steps.{name}.after: no step named {other[:80]!r}",
                                   code="unknown_step", field=f"steps.{name}.after",
                                   step=name)
    return list(dict.fromkeys(after))


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of `graph` (step -> the steps it comes after) as the steps along it, or None.
    Iterative depth-first search: no workflow's size can exhaust Python's stack."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in graph:
        if state.get(root):
            continue
        path, stack = [root], [iter(graph[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return None


async def plan(body: Any, parse_step: ParseStep, *, max_steps: int,
               max_parents: int) -> Plan:
    """Validate a workflow body (422 with a stable code and the step at fault otherwise)
    and draw its ids."""
    steps = _steps(body, max_steps)
    graph = {name: _after(name, step, steps) for name, step in steps.items()}
    cycle = find_cycle(graph)
    if cycle is not None:
        raise ValidationFailed(f"steps: a cycle, {' -> '.join(reversed(cycle))}",
                               code="workflow_cycle", field="steps", steps=cycle)
    workflow_id = new_job_id()
    ids = {name: new_job_id() for name in steps}
    jobs = []
    for name, step in steps.items():
        try:
            new = await parse_step({k: v for k, v in step.items() if k != "after"})
        except ApiError as exc:  # the step at fault, as a batch names its index
            raise type(exc)(f"steps.{name}: {exc.message}", code=exc.code,
                            headers=exc.headers, **{**exc.extra, "step": name}) from None
        parents = [ids[other] for other in graph[name]] + list(new.depends_on)
        if parents and new.run_at is not None:
            raise ValidationFailed(f"steps.{name}: a step waits for the steps before it or "
                                   f"for a delay, not both", field=f"steps.{name}.after",
                                   step=name)
        if len(set(parents)) > max_parents:
            raise ValidationFailed(f"steps.{name}: {len(set(parents))} parents, more than "
                                   f"{max_parents} (max_parents)", code="too_many_parents",
                                   field=f"steps.{name}.after", step=name, limit=max_parents)
        # Every step runs: a cached result or a unique job's live twin answering for one
        # would leave the id its later steps wait for without a job.
        jobs.append(dataclasses.replace(new, id=ids[name], workflow_id=workflow_id, step=name,
                                        depends_on=tuple(dict.fromkeys(parents)),
                                        cache_ttl=None, bypass_cache=False, unique=False))
    return Plan(workflow_id, ids, jobs)
