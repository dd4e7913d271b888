"""examples/slides end to end: its own config and client, through a real serve. What the
slide team relies on: one extraction at a time, at most two analyses, generation never held
back by a busy extraction queue, and the nightly clean-up."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs, wait_finished
from tests.examples.conftest import Example

pytestmark = pytest.mark.e2e

Span = tuple[float, float]


def _spans(jobs: list[dict[str, Any]], task: str) -> list[Span]:
    mine = [job for job in jobs if job["task"] == task]
    assert mine and all(job["status"] == "succeeded" for job in mine), mine
    return sorted((job["started_at"], job["finished_at"]) for job in mine)


def _most_at_once(spans: list[Span]) -> int:
    """The most spans that overlap at any instant; one ending as another starts is not an
    overlap (an end sorts before a start at the same time)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_the_slide_pipeline_keeps_its_queue_limits(example: Callable[..., Example]) -> None:
    run = example("slides")
    out = run.run_client("--videos", "5")
    summary = json.loads(out.stdout.splitlines()[-1])
    assert [v["ok"] for v in summary["videos"]] == [True] * 5, out.stdout

    with httpx.Client(base_url=run.server.url, timeout=30) as client:
        jobs = all_jobs(client)
    assert len(jobs) == 15
    extraction = _spans(jobs, "extract_frames")
    assert _most_at_once(extraction) == 1, "two extractions ran at once"
    assert _most_at_once(_spans(jobs, "analyze_frames")) <= 2
    # Generation started while extractions were still waiting, and waited for no slot.
    generation = [job for job in jobs if job["task"] == "generate_slides"]
    last_extraction_start = extraction[-1][0]
    assert any(job["started_at"] < last_extraction_start for job in generation), generation
    assert max(job["wait_time"] for job in generation) < 2.0, generation
    for video in summary["videos"]:
        assert (run.data_dir / "slides" / video["video_id"] / "slides.json").is_file()


def test_generation_starts_at_once_behind_a_flood_of_extractions(
        example: Callable[..., Example]) -> None:
    run = example("slides")
    with httpx.Client(base_url=run.server.url, timeout=30) as client:
        # Slides need a video's analysis: make one, then flood the extraction queue.
        for task in ("extract_frames", "analyze_frames"):
            job = client.post("/api/jobs", json={"task": task,
                                                 "params": {"video_id": "ready"}}).json()
            assert wait_finished(client, job["id"])["status"] == "succeeded"
        flood = [client.post("/api/jobs", json={"task": "extract_frames", "params": {
            "video_id": f"flood-{i}", "frames": 20}}).json() for i in range(4)]
        deck = client.post("/api/jobs", json={"task": "generate_slides",
                                              "params": {"video_id": "ready"}}).json()
        done = wait_finished(client, deck["id"])
        assert done["status"] == "succeeded" and done["wait_time"] < 2.0, done
        states = [client.get(f"/api/jobs/{j['id']}").json()["status"] for j in flood]
        assert "queued" in states, states  # the extraction queue was still busy
        for job in flood:
            client.post(f"/api/jobs/{job['id']}/cancel")


def test_the_nightly_maintenance_deletes_the_frames_of_finished_videos(
        example: Callable[..., Example]) -> None:
    run = example("slides")
    run.run_client("--videos", "2")
    with httpx.Client(base_url=run.server.url, timeout=30) as client:
        (schedule,) = client.get("/api/schedules").json()["schedules"]
        # The TOML's own timetable: nightly, so the test runs it now instead of waiting.
        assert (schedule["name"], schedule["cron"]) == ("nightly-maintenance", "0 3 * * *")
        assert schedule["next_fire"] is not None
        fired = client.post("/api/schedules/nightly-maintenance/trigger")
        assert fired.status_code == 202, fired.text
        done = wait_finished(client, fired.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {"frames_removed_for": ["lecture-1", "lecture-2"]}
    for video in ("lecture-1", "lecture-2"):
        assert not (run.data_dir / "slides" / video / "frames").exists()
        assert (run.data_dir / "slides" / video / "slides.json").is_file()
