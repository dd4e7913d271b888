"""GET /api/workflows/{id}'s JSON from the workflow's jobs: status, progress and steps."""

from __future__ import annotations

import dataclasses

from scholarsource.api.workflows import status_of, summary
from scholarsource.store.base import Job, JobState, NewJob
from scholarsource.store.rows import new_jobs


def jobs(*states: JobState, steps: tuple[str | None, ...] = ()) -> list[Job]:
    made = new_jobs([NewJob("t", {}, "default", 0, 1, workflow_id="w") for _ in states])
    names = steps or tuple(f"s{i}" for i in range(len(states)))
    return [dataclasses.replace(job, status=state, step=name)
            for job, state, name in zip(made, states, names, strict=True)]


def test_the_status_is_running_until_every_step_is_final() -> None:
    s, d, c = JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED
    assert status_of(jobs(s, JobState.RUNNING, d)) == "running"
    assert status_of(jobs(s, JobState.WAITING)) == "running"
    assert status_of(jobs(s, s)) == "succeeded"
    assert status_of(jobs(s, d, c)) == "failed"
    assert status_of(jobs(s, c)) == "cancelled"


def test_progress_counts_final_steps_whole_and_running_ones_by_their_own() -> None:
    done, running, waiting = jobs(JobState.SUCCEEDED, JobState.RUNNING, JobState.WAITING)
    body = summary("w", [done, dataclasses.replace(running, progress=0.5), waiting])
    assert body["progress"] == {"done": 1, "total": 3, "fraction": 0.5}
    assert body["counts"] == {"succeeded": 1, "running": 1, "waiting": 1}
    assert (body["status"], body["final"]) == ("running", False)


def test_a_job_without_a_step_name_shows_by_its_id() -> None:
    named, unnamed = jobs(JobState.QUEUED, JobState.QUEUED, steps=("a", None))
    child = dataclasses.replace(unnamed, depends_on=[named.id])
    body = summary("w", [named, child])
    assert set(body["steps"]) == {"a", child.id}
    assert body["steps"][child.id]["after"] == ["a"]
