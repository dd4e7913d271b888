"""ctx.submit and ctx.continue_with: fan-out from inside a task, without holding a slot.

A task submits children with `ctx.submit(task, params, **options)` (the options of a submit:
queue, priority, max_attempts, timeout, delay, depends_on among its siblings...) and gets
each one's id at once. It never waits for them in its slot: to gather their results it
returns `ctx.continue_with(task, params, after=[child ids])`, and ends. Its result is
`{"continued_by": ID}`, and job ID, created in the transaction that records the success,
runs once every job in `after` has ended, with their results in `ctx.parent_results`.

Each submit is checked here, in the slot, by the rules of the API (an unknown task, a bad
option: ChildRefused, raised in the task at once), then again by the pool, which trusts
nothing a slot sends. The pool writes the children with its other batched writes, under the
attempt's token: a stale attempt adds nothing. A child's id comes from its parent's id and
its place among the parent's submits (store/fanout.py), so a retried attempt names the same
children and finds them there, as they ran or still run: a retry never doubles a fan-out,
and an attempt that submits differently from the first keeps the first one's children.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from scholarsource.api.delays import DELAY_FIELDS
from scholarsource.api.schemas import parse_submit
from scholarsource.config import Config
from scholarsource.errors import ChildRefused, ValidationFailed
from scholarsource.store.base import NewJob, TaskDefaults
from scholarsource.store.fanout import CONTINUATION, child_id

# Options a child cannot take: its id is its identity, so nothing else may answer for it.
_NOT_FOR_CHILDREN = ("unique", "cache_ttl", "bypass_cache")


class Continuation:
    """What ctx.continue_with returns and the task returns in turn: its job ends, and job
    `job_id` goes on once every job it waits for has ended."""

    def __init__(self, job_id: str, body: dict[str, Any]) -> None:
        self.job_id = job_id
        self.body = body

    def result(self) -> dict[str, str]:
        """The parent's result: where its work continues."""
        return {"continued_by": self.job_id}


def parse_child(body: Any, tasks: Mapping[str, TaskDefaults], config: Config, tenant: str,
                siblings: Collection[str], max_parents: int) -> NewJob:
    """A child job (its id, parent and workflow are set by the caller) from a submit body,
    by the API's rules: the task must be registered, and `depends_on` may name only
    `siblings` (the children its parent submitted before it), at most `max_parents`."""
    if not isinstance(body, dict):
        raise ValidationFailed("a child must be a JSON object")
    for option in _NOT_FOR_CHILDREN:
        if option in body:
            raise ValidationFailed(f"{option}: a child's id is its identity; it takes no "
                                   f"{option}", field=option)
    parents = body.get("depends_on") or []
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ValidationFailed("depends_on: must be a list of child ids", field="depends_on")
    strangers = [p for p in parents if p not in siblings]
    if strangers:
        raise ValidationFailed(f"depends_on: {strangers[0]!r} is not a child this attempt "
                               f"submitted before", field="depends_on")
    if parents and any(body.get(delay) is not None for delay in DELAY_FIELDS):
        raise ValidationFailed("depends_on: a job waits for its parents or for a delay, "
                               "not both", field="depends_on")
    if len(set(parents)) > max_parents:
        raise ValidationFailed(f"depends_on: {len(set(parents))} parents, more than "
                               f"{max_parents}", code="too_many_parents", field="depends_on")
    name = body.get("task")
    new = parse_submit({**body, "depends_on": None}, tasks.get(name) if isinstance(name, str)
                       else None, config, tenant, known_tasks=tasks)
    return dataclasses.replace(new, depends_on=tuple(dict.fromkeys(parents)),
                               unique=False, cache_ttl=None)


class Fanout:
    """One attempt's children, as its task submits them (in the slot)."""

    def __init__(self, job_id: str, tasks: Mapping[str, TaskDefaults], config: Config,
                 send: Callable[[int | str, str], None]) -> None:
        self._job_id = job_id
        self._tasks = tasks
        self._config = config
        self._send = send
        self._ids: list[str] = []
        self._known: set[str] = set()

    def submit(self, task: str, params: dict[str, Any] | None,
               options: dict[str, Any]) -> str:
        """Check and send one child; its id."""
        if len(self._ids) >= self._config.max_children:
            raise ChildRefused(f"ctx.submit: more than {self._config.max_children} children "
                               f"in one attempt (max_children)")
        if "after" in options:
            raise ChildRefused("ctx.submit: after is for ctx.continue_with; a child waits "
                               "for its siblings with depends_on")
        body = self._body("ctx.submit", task, params, options, self._config.max_parents)
        job_id = child_id(self._job_id, len(self._ids))
        self._send(len(self._ids), json.dumps(body))
        self._ids.append(job_id)
        self._known.add(job_id)
        return job_id

    def continue_with(self, task: str, params: dict[str, Any] | None,
                      after: Collection[str], options: dict[str, Any]) -> Continuation:
        """Check the continuation; the task returns it."""
        if isinstance(after, str) or not isinstance(after, Collection):
            raise ChildRefused("ctx.continue_with: after must be a list of child ids")
        if "depends_on" in options:
            raise ChildRefused("ctx.continue_with: name what it waits for with after")
        body = self._body("ctx.continue_with", task, params,
                          {**options, "depends_on": list(after)}, self._config.max_children)
        return Continuation(child_id(self._job_id, CONTINUATION), body)

    def _body(self, what: str, task: str, params: dict[str, Any] | None,
              options: dict[str, Any], max_parents: int) -> dict[str, Any]:
        """The submit body, or ChildRefused saying why a submit would refuse it."""
        body = {**options, "task": task, "params": {} if params is None else params}
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ChildRefused(f"{what}: the child has no JSON form ({exc})") from None
        try:
            parse_child(body, self._tasks, self._config, "", self._known, max_parents)
        except ValidationFailed as exc:
            raise ChildRefused(f"{what}: {exc}", code=exc.code) from None
        return body
