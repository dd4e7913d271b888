"""new_jobs and parse_submit build each Job and NewJob without its frozen __init__ (a batch
makes 1,000 of each, store/frozen.py): they must still be exactly what that __init__ would
make, and as frozen; the ids as random as ever."""

from __future__ import annotations

import dataclasses
import re

import pytest

from scholarsource.api.schemas import parse_submit
from scholarsource.config import Config
from scholarsource.store.base import Job, JobState, NewJob, TaskDefaults
from scholarsource.store.rows import new_job_ids, new_jobs


def test_a_new_job_is_what_its_own_init_makes_and_stays_frozen() -> None:
    news = [NewJob("noop", {"n": 1}, "default", 0, 3),
            NewJob("echo", {}, "q", 5, 1, tenant="t", run_at=4e9, unique=True,
                   concurrency_key="u", concurrency_limit=2, id="given"),
            NewJob("echo", {}, "q", 0, 1, depends_on=("p1", "p2"), workflow_id="w",
                   step="s", parent_id="p", schedule="s1", scheduled_for=1.0)]
    plain, delayed, child = new_jobs(news)
    names = {f.name for f in dataclasses.fields(Job)}
    for job in (plain, delayed, child):
        assert set(vars(job)) == names  # every field, and nothing else
        assert dataclasses.replace(job) == job  # through Job.__init__: the same job
        with pytest.raises(dataclasses.FrozenInstanceError):
            job.status = JobState.RUNNING  # type: ignore[misc]
    assert (plain.status, plain.attempts, plain.result, plain.params) == (
        JobState.QUEUED, 0, None, {"n": 1})
    assert (delayed.id, delayed.status, delayed.run_at) == ("given", JobState.SCHEDULED, 4e9)
    assert (child.status, child.depends_on, child.workflow_id) == (
        JobState.WAITING, ["p1", "p2"], "w")
    # Lists are each job's own, never shared between jobs.
    assert plain.attempts_history is not delayed.attempts_history
    assert plain.created_at == delayed.created_at == child.created_at


@pytest.mark.parametrize("body", [
    {"task": "noop"},
    {"task": "noop", "params": {"x": [1]}, "queue": "q", "priority": 3, "max_attempts": 2,
     "timeout": 9, "memory_limit": "1MB", "unique": True, "delay": 60,
     "concurrency_key": "u"},
    {"task": "noop", "depends_on": ["a", "b", "a"], "on_parent_failure": "run"},
])
def test_a_parsed_submit_is_what_newjob_init_makes_and_stays_frozen(body: dict[str, object]
                                                                     ) -> None:
    new = parse_submit(body, TaskDefaults("noop", "default", None, None), Config(), "t", "k")
    assert set(vars(new)) == {f.name for f in dataclasses.fields(NewJob)}
    assert dataclasses.replace(new) == new
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.priority = 1  # type: ignore[misc]
    assert (new.tenant, new.idempotency_key, new.schedule, new.id) == ("t", "k", None, None)
    if "depends_on" in body:
        assert (new.depends_on, new.on_parent_failure) == (("a", "b"), "run")
    else:
        assert (new.depends_on, new.on_parent_failure) == ((), "cancel")


def test_ids_are_random_url_safe_sort_as_their_times_and_never_start_with_a_dash() -> None:
    ids = new_job_ids(5000)
    assert len(set(ids)) == 5000
    # The millisecond's stamp, then 128 random bits.
    assert all(re.fullmatch(r"[0-9A-Za-z]{8}[A-Za-z0-9_-]{22}", job_id) for job_id in ids)
    assert len({job_id[:8] for job_id in ids}) == 1 and len({job_id[8:] for job_id in ids}) == 5000
    assert not any(job_id.startswith("-") for job_id in ids)
    assert new_job_ids(0) == []
    times = [0.0, 0.001, 1.0, 61.999, 62.0, 1.7e9, 1.7e9 + 0.001, 4e9, 62**8 / 1000 - 0.001]
    stamped = [new_job_ids(1, at)[0] for at in times]
    assert sorted(stamped) == stamped and len({job_id[:8] for job_id in stamped}) == len(times)
    made = new_jobs([NewJob("noop", {}, "default", 0, 1)] * 1000)
    assert len({job.id for job in made}) == 1000
    # Each id carries its job's created_at.
    assert {job.id[:8] for job in made} == {new_job_ids(1, made[0].created_at)[0][:8]}
