"""The task registry: `@task` records a function under a name; only registered names run.

Modules are imported only when the operator names them in `task_modules`; nothing a request
says is ever imported or evaluated.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

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


_REGISTRY: dict[str, TaskSpec] = {}


def task(name: str | None = None, *, queue: str = "default", timeout: float | None = None,
         max_attempts: int | None = None) -> Callable[[F], F]:
    """Register `fn(ctx, **params)` as a task; it must return something JSON can encode."""

    def register(fn: F) -> F:
        spec = TaskSpec(name=name or fn.__name__, fn=fn, queue=queue, timeout=timeout,
                        max_attempts=max_attempts)
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
