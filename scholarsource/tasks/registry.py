"""The task registry: `@task` records a function under a name; only registered names run.

Modules are imported only when the operator names them in `task_modules`; nothing a request
says is ever imported or evaluated.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from scholarsource.config import parse_size
from scholarsource.errors import TaskError, UnknownTaskError

F = TypeVar("F", bound=Callable[..., Any])

BUILTIN_MODULE = "scholarsource.tasks.builtin"


@dataclass(frozen=True)
class TaskSpec:
    """A registered task and the defaults its jobs get."""

    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    timeout: float | None = None
    max_attempts: int | None = None
    memory: int | None = None        # expected need, bytes: admission plans with it
    memory_limit: int | None = None  # cap on the slot's RSS, bytes
    backoff_base: float | None = None
    backoff_max: float | None = None


_REGISTRY: dict[str, TaskSpec] = {}


def task(name: str | None = None, *, queue: str = "default", timeout: float | None = None,
         max_attempts: int | None = None, memory: int | str | None = None,
         memory_limit: int | str | None = None, backoff_base: float | None = None,
         backoff_max: float | None = None) -> Callable[[F], F]:
    """Register `fn(ctx, **params)` as a task; it must return something JSON can encode.

    `memory` is what one job is expected to need (bytes or "512MB"): a job starts only when
    that much is free. Without it the pool learns it from the task's recent runs.
    `memory_limit` caps the RSS of the job's processes: over it the attempt fails.
    """
    try:
        sizes = [None if v is None else parse_size(v) for v in (memory, memory_limit)]
    except ValueError as exc:
        raise TaskError(f"task {name!r}: {exc}") from None

    def register(fn: F) -> F:
        spec = TaskSpec(name=name or fn.__name__, fn=fn, queue=queue, timeout=timeout,
                        max_attempts=max_attempts, memory=sizes[0], memory_limit=sizes[1],
                        backoff_base=backoff_base, backoff_max=backoff_max)
        existing = _REGISTRY.get(spec.name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise TaskError(f"task name {spec.name!r} is registered twice "
                            f"({existing.fn.__module__} and {fn.__module__})")
        _REGISTRY[spec.name] = spec
        return fn

    return register


def load_tasks(modules: Iterable[str]) -> dict[str, TaskSpec]:
    """Import the built-in tasks and the configured modules; returns the registry."""
    for module in (BUILTIN_MODULE, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TaskError(f"cannot import task module {module!r}: {exc}") from exc
    return dict(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    """The registered task called `name`, or UnknownTaskError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(f"no task named {name!r} is registered") from None
