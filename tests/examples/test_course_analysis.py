"""examples/course_analysis end to end: its own config and client, through a real serve.
What the course team relies on: the frontend's form through /api/submit, a cached course
answered without running anything, bypass_cache running it again, one analysis per user at
a time beside other users', and the LLM quota held in every window."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs
from tests.examples.conftest import Example

pytestmark = pytest.mark.e2e

Span = tuple[float, float]


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _span(job: dict[str, Any]) -> Span:
    assert job["status"] == "succeeded", job
    return job["started_at"], job["finished_at"]


def test_the_course_service_caches_queues_per_user_and_keeps_the_llm_quota(
        example: Callable[..., Example]) -> None:
    run = example("course_analysis")
    out = run.run_client()
    summary = json.loads(out.stdout.splitlines()[-1])
    courses = summary["courses"]

    with httpx.Client(base_url=run.server.url, timeout=30) as client:
        jobs = {job["id"]: job for job in all_jobs(client)}
        analyses = [job for job in jobs.values() if job["task"] == "analyze_course"]
        llm_calls = [job for job in jobs.values() if job["task"] == "ask_llm"]
        # Three courses and one fresh re-run: four analyses, four LLM calls each.
        assert len(analyses) == 4 and len(llm_calls) == 16, out.stdout
        assert all(job["status"] == "succeeded" for job in jobs.values())

        # The reopened course was the cached analysis: the same job, nothing run for it.
        assert summary["cache_hit"] is True
        assert summary["reopened"] == courses["alice/CS101"]
        # Another user's form for the same course: the same cached analysis (the user
        # decides when a job runs, not what it computes).
        again = client.post("/api/submit", json={"course_id": "CS101", "user_id": "bob"})
        assert again.status_code == 200 and again.headers["Cache-Hit"] == "true"
        # The re-run's success is now the one the cache answers with.
        assert again.json()["job_id"] == summary["rerun"]
        assert len(all_jobs(client)) == len(jobs)

    # bypass_cache ran the course anew, through the form: a job of its own, LLM calls again.
    rerun = jobs[summary["rerun"]]
    assert rerun["id"] not in courses.values() and rerun["bypass_cache"] is True
    asked = [job for job in llm_calls if job["params"]["course_id"] == "CS101"]
    assert len(asked) == 8, asked

    # alice's two courses one after the other; bob's beside one of them.
    alice = [_span(jobs[courses[k]]) for k in ("alice/CS101", "alice/MATH201")]
    bob = _span(jobs[courses["bob/BIO110"]])
    assert not _overlap(*alice), "one user's two analyses ran at once"
    assert any(_overlap(bob, span) for span in alice), "bob waited for alice"
    assert {jobs[courses[k]]["concurrency_key"] for k in courses} == {"alice", "bob"}

    # The quota: no second (any window, not only whole ones) saw more than 4 calls start.
    starts = sorted(job["started_at"] for job in llm_calls)
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t < start + 1.0) <= 4, starts
    # The calls themselves, as the task recorded them: one line per start, 16 in all.
    assert len((run.data_dir / "llm_calls.log").read_text().splitlines()) == 16
    for course in ("CS101", "MATH201", "BIO110"):
        assert (run.data_dir / "courses" / f"{course}.json").is_file()
