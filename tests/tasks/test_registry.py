"""Which built-in tasks a server exposes, and task timeouts against max_timeout."""

from __future__ import annotations

import pytest

from scholarsource.errors import TaskError
from scholarsource.tasks import registry
from scholarsource.tasks.registry import SAFE_BUILTINS, load_tasks, task

EVERY_BUILTIN = {"noop", "sleep", "cpu", "echo", "fetch", "fail", "memory", "crash"}


@pytest.mark.parametrize(("choice", "exposed"), [
    (("all",), EVERY_BUILTIN),
    (("safe",), set(SAFE_BUILTINS)),
    (("none",), set()),
    (("noop", "cpu"), {"noop", "cpu"}),
])
def test_builtin_tasks_selects_what_is_registered(choice: tuple[str, ...],
                                                  exposed: set[str]) -> None:
    assert set(load_tasks([], choice)) & EVERY_BUILTIN == exposed
    assert {"cpu", "memory", "crash"}.isdisjoint(SAFE_BUILTINS)


def test_an_unknown_builtin_name_is_an_error() -> None:
    with pytest.raises(TaskError, match="no built-in task 'slep'"):
        load_tasks([], ("noop", "slep"))


def test_a_task_timeout_above_max_timeout_is_refused_at_boot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    load_tasks([])  # the built-ins are in the registry the test then works on a copy of
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @task("test_registry_patient", timeout=7200)
    def patient(ctx: object) -> None:
        """Declares two hours."""

    assert load_tasks([], max_timeout=7200)["test_registry_patient"].timeout == 7200
    with pytest.raises(TaskError, match="'test_registry_patient' declares timeout=7200, "
                                        "above max_timeout \\(3600\\)"):
        load_tasks([], max_timeout=3600)


def test_cache_ttl_and_unique_are_task_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    load_tasks([])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @task("test_registry_course", cache_ttl=600, unique=True)
    def course(ctx: object) -> None:
        """Cached ten minutes, one live job per params."""

    spec = load_tasks([])["test_registry_course"]
    assert (spec.cache_ttl, spec.unique) == (600.0, True)
    for bad in (0, -1, float("nan"), float("inf"), "600", True):
        with pytest.raises(TaskError, match="cache_ttl must be a number of seconds"):
            task("test_registry_bad", cache_ttl=bad)  # type: ignore[arg-type]
