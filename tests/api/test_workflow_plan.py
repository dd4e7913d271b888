"""A workflow body becomes its jobs only when all of it is valid: names, `after`, cycles and
each step as a submit, checked before anything is written (api/workflow_plan.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scholarsource.api.workflow_plan import Plan, find_cycle, plan
from scholarsource.errors import ValidationFailed
from scholarsource.store.base import NewJob


async def parse_step(body: dict[str, Any]) -> NewJob:
    if body.get("task") == "nosuch":
        raise ValidationFailed("task: no task named 'nosuch' is registered",
                               code="unknown_task", field="task")
    return NewJob(task=body["task"], params={}, queue="default", priority=0, max_attempts=1,
                  run_at=body.get("run_at"), unique=bool(body.get("unique")),
                  cache_ttl=body.get("cache_ttl"))


def make(steps: Any, **limits: int) -> Plan:
    return asyncio.run(plan({"steps": steps}, parse_step,
                            max_steps=limits.get("max_steps", 10),
                            max_parents=limits.get("max_parents", 10)))


def refused(steps: Any, **limits: int) -> dict[str, Any]:
    with pytest.raises(ValidationFailed) as caught:
        make(steps, **limits)
    return caught.value.to_json()


def test_steps_name_each_other_through_the_ids_drawn_for_them() -> None:
    made = make({"a": {"task": "t"}, "b": {"task": "t", "after": ["a"]},
                 "c": {"task": "t", "after": ["a", "b", "a"]}})
    jobs = {job.step: job for job in made.jobs}
    assert {job.id for job in made.jobs} == set(made.steps.values())
    assert all(job.workflow_id == made.id for job in made.jobs)
    assert jobs["a"].depends_on == ()
    assert jobs["c"].depends_on == (made.steps["a"], made.steps["b"])


def test_every_step_runs_whatever_the_cache_or_uniqueness_would_answer() -> None:
    made = make({"a": {"task": "t", "unique": True, "cache_ttl": 60},
                 "b": {"task": "t", "after": ["a"]}})
    assert all(not job.looks_first or job.depends_on for job in made.jobs)
    assert {(job.unique, job.cache_ttl) for job in made.jobs} == {(False, None)}


def test_cycles_are_found_and_named() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    deep = {str(i): [str(i + 1)] for i in range(5000)} | {"5000": ["0"]}
    assert find_cycle(deep) is not None  # no recursion: any length fits
    answer = refused({"x": {"task": "t", "after": ["y"]}, "y": {"task": "t", "after": ["x"]}})
    assert answer["error"] == "workflow_cycle" and set(answer["steps"]) == {"x", "y"}


@pytest.mark.parametrize(("steps", "code", "field"), [
    ([], "invalid_request", "steps"),
    ({}, "invalid_request", "steps"),
    ({"bad name": {"task": "t"}}, "invalid_request", "steps"),
    ({"a": "t"}, "invalid_request", "steps.a"),
    ({"a": {"task": "t", "after": "b"}}, "invalid_request", "steps.a.after"),
    ({"a": {"task": "t", "after": ["nope"]}}, "unknown_step", "steps.a.after"),
    ({"a": {"task": "t"}, "b": {"task": "nosuch"}}, "unknown_task", "task"),
    ({"a": {"task": "t"}, "b": {"task": "t", "after": ["a"], "run_at": 5.0}},
     "invalid_request", "steps.b.after"),
])
def test_a_bad_step_is_refused_with_its_code_and_place(steps: Any, code: str,
                                                       field: str) -> None:
    answer = refused(steps)
    assert (answer["error"], answer.get("field")) == (code, field)


def test_limits_on_steps_and_parents() -> None:
    assert refused({f"s{i}": {"task": "t"} for i in range(3)}, max_steps=2)["error"] == \
        "too_many_steps"
    many = {"a": {"task": "t"}, "b": {"task": "t"}, "c": {"task": "t", "after": ["a", "b"]}}
    assert refused(many, max_parents=1)["error"] == "too_many_parents"
