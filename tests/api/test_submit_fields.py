"""The submit fields of the result cache and unique jobs, and the frontend's own form."""

from __future__ import annotations

from typing import Any

import pytest

from scholarsource.api.compat import envelope
from scholarsource.api.schemas import parse_submit
from scholarsource.config import Config
from scholarsource.errors import ValidationFailed
from scholarsource.store.base import TaskDefaults

CACHED_UNIQUE = TaskDefaults("course", "default", None, None, cache_ttl=600.0, unique=True)
PLAIN = TaskDefaults("echo", "default", None, None)


def submit(task: TaskDefaults, **fields: Any) -> Any:
    return parse_submit({"task": task.name, "params": {"a": 1}, **fields}, task, Config(),
                        "default")


def test_the_task_gives_the_defaults_and_a_submit_overrides_them() -> None:
    job = submit(CACHED_UNIQUE)
    assert (job.cache_ttl, job.bypass_cache, job.unique) == (600.0, False, True)
    job = submit(CACHED_UNIQUE, cache_ttl=5, bypass_cache=True, unique=False)
    assert (job.cache_ttl, job.bypass_cache, job.unique) == (5.0, True, False)
    job = submit(PLAIN, cache_ttl=None, bypass_cache=None, unique=None)
    assert (job.cache_ttl, job.bypass_cache, job.unique) == (None, False, False)
    assert job.fingerprint is None and not job.looks_first  # the batched path
    assert submit(PLAIN, bypass_cache=True).fingerprint is not None  # it refreshes the cache


@pytest.mark.parametrize(("field", "value"), [
    ("cache_ttl", 0), ("cache_ttl", -5), ("cache_ttl", 30 * 86400 + 1), ("cache_ttl", True),
    ("bypass_cache", 1), ("bypass_cache", "true"), ("unique", "yes"), ("unique", 0),
])
def test_bad_values_are_a_422_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        submit(PLAIN, **{field: value})
    assert caught.value.extra["field"] == field


def test_a_form_without_task_becomes_the_compat_task_params() -> None:
    form = {"course": "CS101", "bypass_cache": True}
    assert envelope(form, "course") == {"task": "course", "params": {"course": "CS101"},
                                        "bypass_cache": True}
    assert form == {"course": "CS101", "bypass_cache": True}  # the body is left alone
    assert envelope({"course": "CS101"}, "course")["bypass_cache"] is None
    rest = {"task": "echo", "params": {}}
    assert envelope(rest, "course") is rest and envelope(rest, "") is rest
    assert envelope(["not", "an", "object"], "") == ["not", "an", "object"]
    with pytest.raises(ValidationFailed) as caught:
        envelope({"course": "CS101"}, "")
    assert caught.value.code == "compat_task_not_set" and "compat_task" in caught.value.message


def test_a_form_field_can_name_the_concurrency_key() -> None:
    form = {"course": "CS101", "user_id": "alice"}
    assert envelope(form, "course", "user_id") == {
        "task": "course", "params": {"course": "CS101"}, "bypass_cache": None,
        "concurrency_key": "alice"}
    assert envelope({"course": "CS101", "user_id": 42}, "course",
                    "user_id")["concurrency_key"] == "42"  # a numeric id is a key too
    assert "concurrency_key" not in envelope({"course": "CS101"}, "course", "user_id")
    off = envelope(form, "course")  # the setting is off: the field is a param like any
    assert "concurrency_key" not in off and off["params"] == form
    # Anything else is passed on for parse_submit to refuse (422 concurrency_key).
    assert envelope({"user_id": ["x"]}, "course", "user_id")["concurrency_key"] == ["x"]
