"""Workflows built from parts, in the spirit of Celery's canvas: `sig` is one task call,
`chain` runs parts one after another, `group` runs them side by side, and `chord` is a group
and then a callback that gets every result. Each builds the body of POST /api/workflows
(`workflow_body`); nothing here talks to the server.

    flow = chain(sig("validate", {"url": url}),
                 group([sig("extract", {"table": t}) for t in ("a", "b", "c")]),
                 sig("report", priority=5))
    run = client.workflow(flow)        # run.steps: {"validate": ID, "extract": ID, ...}

A step waits for every exit of the part before it (a group's exits are all its members),
and reads their results as `ctx.parent_results`. Steps are named after their task
("extract", then "extract.2", ...) unless `sig(..., name=...)` names one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Canvas:
    """A part of a workflow: it places its steps after the given ones."""

    def place(self, steps: dict[str, dict[str, Any]], after: list[str]) -> list[str]:
        """Add this part's steps to `steps`, each first one after `after`; returns the names
        of its last steps (what comes next waits for them)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Signature(Canvas):
    """One task call: its params and the submit body's other fields (queue, priority,
    max_attempts, timeout, on_parent_failure, ...); `name` names its step."""

    task: str
    params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def place(self, steps: dict[str, dict[str, Any]], after: list[str]) -> list[str]:
        name = self.name or _free_name(self.task, steps)
        if name in steps:
            raise ValueError(f"two steps are named {name!r}")
        body = {"task": self.task, "params": dict(self.params), **self.options}
        steps[name] = {**body, "after": list(after)} if after else body
        return [name]


def _free_name(task: str, steps: Mapping[str, Any]) -> str:
    name, n = task, 1
    while name in steps:
        n += 1
        name = f"{task}.{n}"
    return name


@dataclass(frozen=True)
class Chain(Canvas):
    """Parts one after another."""

    parts: tuple[Canvas, ...]

    def place(self, steps: dict[str, dict[str, Any]], after: list[str]) -> list[str]:
        for part in self.parts:
            after = part.place(steps, after)
        return after


@dataclass(frozen=True)
class Group(Canvas):
    """Parts side by side, each after the same steps; what follows waits for them all."""

    parts: tuple[Canvas, ...]

    def place(self, steps: dict[str, dict[str, Any]], after: list[str]) -> list[str]:
        return [name for part in self.parts for name in part.place(steps, after)]


def sig(task: str, params: Mapping[str, Any] | None = None, *, name: str | None = None,
        **options: Any) -> Signature:
    """One call of `task` with `params`; `options` are a submit's other fields."""
    return Signature(task, dict(params or {}), options, name)


def chain(*parts: Canvas) -> Chain:
    """Run `parts` in order, each after the one before."""
    if not parts:
        raise ValueError("a chain needs at least one part")
    return Chain(parts)


def group(parts: Iterable[Canvas]) -> Group:
    """Run `parts` side by side."""
    members = tuple(parts)
    if not members:
        raise ValueError("a group needs at least one part")
    return Group(members)


def chord(header: Group | Iterable[Canvas], callback: Canvas) -> Chain:
    """Run `header` side by side, then `callback` once they all succeeded, with all their
    results in its ctx.parent_results."""
    return Chain((header if isinstance(header, Group) else group(header), callback))


def workflow_body(canvas: Canvas) -> dict[str, Any]:
    """The body of POST /api/workflows that runs `canvas`."""
    steps: dict[str, dict[str, Any]] = {}
    canvas.place(steps, [])
    return {"steps": steps}
