"""The task registry: `@task` records a function under a name; only registered names run.

Modules are imported only when the operator names them in `task_modules`; nothing a request
says is ever imported or evaluated.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from scholarsource.config import parse_size
from scholarsource.errors import TaskError
from scholarsource.limits import MAX_CONCURRENCY, RATE_HINT, Rate, TaskLimits, parse_rate
from scholarsource.store.base import TaskDefaults
from scholarsource.tasks.params import Schema, describe

F = TypeVar("F", bound=Callable[..., Any])

BUILTIN_MODULE = "scholarsource.tasks.builtin"
# What `builtin_tasks = "safe"` exposes: nothing here can take a slot down or eat the box's
# memory. "all" adds cpu (burns a core), memory (allocates on demand) and crash (kills its
# process), which the tests and the bench use.
SAFE_BUILTINS = ("noop", "sleep", "echo", "fetch", "fail")


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
    params: Schema | None = None  # what the task takes (tasks/params.py), checked at submit
    cache_ttl: float | None = None  # seconds a success answers the same params again
    unique: bool = False  # at most one live job per tenant and params
    rate_limit: Rate | None = None  # at most N starts per window, across the pool
    concurrency_limit: int | None = None  # default for a submit's concurrency_key

    def defaults(self, rate: Rate | None = None) -> TaskDefaults:
        """What a submit of this task gets by default (the API's and ctx.submit's), with
        the rate limit in force."""
        return TaskDefaults(self.name, self.queue, self.timeout, self.max_attempts,
                            self.memory, self.memory_limit, self.backoff_base,
                            self.backoff_max, self.params, self.cache_ttl, self.unique,
                            rate_limit=None if rate is None else rate.limit,
                            rate_window=None if rate is None else rate.window,
                            concurrency_limit=self.concurrency_limit)


_REGISTRY: dict[str, TaskSpec] = {}


def task(name: str | None = None, *, queue: str = "default", timeout: float | None = None,
         max_attempts: int | None = None, memory: int | str | None = None,
         memory_limit: int | str | None = None, backoff_base: float | None = None,
         backoff_max: float | None = None, cache_ttl: float | None = None,
         unique: bool = False, rate_limit: str | None = None,
         concurrency_limit: int | None = None) -> Callable[[F], F]:
    """Register `fn(ctx, **params)` as a task; it must return something JSON can encode.

    `memory` is what one job is expected to need (bytes or "512MB"): a job starts only when
    that much is free. Without it the pool learns it from the task's recent runs.
    `memory_limit` caps the RSS of the job's processes: over it the attempt fails.
    `cache_ttl` (seconds): a submit of the same params as a job that succeeded less than
    that ago gets that job back, and nothing runs. `unique`: while a job of the same params
    is queued, running or waiting to retry, a submit gets that job instead of a new one.
    A submit can override each default.
    `rate_limit` ("100/m", "10/s", "500/h"): at most that many of its jobs start in any
    such window, across the pool; the others wait queued (`[tasks.NAME]` overrides it).
    `concurrency_limit`: how many jobs sharing a submit's `concurrency_key` may run at once
    when the submit does not say (default 1).
    """
    try:
        sizes = [None if v is None else parse_size(v) for v in (memory, memory_limit)]
    except ValueError as exc:
        raise TaskError(f"task {name!r}: {exc}") from None
    if cache_ttl is not None and (isinstance(cache_ttl, bool) or
                                  not isinstance(cache_ttl, int | float) or
                                  not 0 < cache_ttl < float("inf")):
        raise TaskError(f"task {name!r}: cache_ttl must be a number of seconds above 0")
    try:
        rate = None if rate_limit is None else parse_rate(rate_limit)
    except ValueError:
        raise TaskError(f"task {name!r}: rate_limit must be {RATE_HINT}, not "
                        f"{rate_limit!r}") from None
    if concurrency_limit is not None and (isinstance(concurrency_limit, bool) or
                                          not isinstance(concurrency_limit, int) or
                                          not 1 <= concurrency_limit <= MAX_CONCURRENCY):
        raise TaskError(f"task {name!r}: concurrency_limit must be a whole number from 1 "
                        f"to {MAX_CONCURRENCY}, not {concurrency_limit!r}")

    def register(fn: F) -> F:
        spec = TaskSpec(name=name or fn.__name__, fn=fn, queue=queue, timeout=timeout,
                        max_attempts=max_attempts, memory=sizes[0], memory_limit=sizes[1],
                        backoff_base=backoff_base, backoff_max=backoff_max,
                        params=describe(fn),
                        cache_ttl=None if cache_ttl is None else float(cache_ttl),
                        unique=unique, rate_limit=rate,
                        concurrency_limit=concurrency_limit)
        existing = _REGISTRY.get(spec.name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise TaskError(f"task name {spec.name!r} is registered twice "
                            f"({existing.fn.__module__} and {fn.__module__})")
        _REGISTRY[spec.name] = spec
        return fn

    return register


def load_tasks(modules: Iterable[str], builtins: Iterable[str] = ("all",),
               max_timeout: float | None = None) -> dict[str, TaskSpec]:
    """Import the built-in tasks and the configured modules; returns the registry, with
    only the built-in tasks that `builtins` names ("all", "safe", "none" or names). A
    task whose own timeout is above `max_timeout` is refused (TaskError), not capped: the
    operator learns at boot that the two settings disagree."""
    for module in (BUILTIN_MODULE, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TaskError(f"cannot import task module {module!r}: {exc}") from exc
    exposed = _builtin_names(tuple(builtins))
    registry = {name: spec for name, spec in _REGISTRY.items()
                if spec.fn.__module__ != BUILTIN_MODULE or name in exposed}
    for spec in registry.values():
        if max_timeout is not None and spec.timeout is not None and spec.timeout > max_timeout:
            raise TaskError(f"task {spec.name!r} declares timeout={spec.timeout:g}, above "
                            f"max_timeout ({max_timeout:g}): lower one or raise the other")
    return registry


def task_rates(registry: Mapping[str, TaskSpec],
               overrides: Mapping[str, TaskLimits]) -> dict[str, Rate]:
    """Each rate-limited task's limit: its `[tasks.NAME]` table's, else its decorator's.
    A table for a task that is not registered is refused (TaskError): a typo would
    otherwise leave a task unlimited without a word."""
    unknown = sorted(set(overrides) - set(registry))
    if unknown:
        raise TaskError(f"[tasks.{unknown[0]}] names no registered task (there are: "
                        f"{', '.join(sorted(registry))})")
    rates = {name: spec.rate_limit for name, spec in registry.items()}
    rates.update({name: t.rate_limit for name, t in overrides.items()})
    return {name: rate for name, rate in rates.items() if rate is not None}


def _builtin_names(choice: tuple[str, ...]) -> set[str]:
    every = {name for name, spec in _REGISTRY.items() if spec.fn.__module__ == BUILTIN_MODULE}
    if choice == ("all",):
        return every
    if choice == ("safe",):
        return set(SAFE_BUILTINS)
    if choice == ("none",) or not choice:
        return set()
    unknown = sorted(set(choice) - every)
    if unknown:
        raise TaskError(f"builtin_tasks: no built-in task {unknown[0]!r} (there are: "
                        f"{', '.join(sorted(every))}; or use all, safe or none)")
    return set(choice)

