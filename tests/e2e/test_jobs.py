"""End to end through a real `scholarsource serve`: jobs run, once, in parallel up to the slots."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs, submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

@pytest.mark.both_backends
def test_500_jobs_from_20_clients_each_run_exactly_once(serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    runs = tmp_path / "runs.txt"

    def submit_batch(batch: int) -> list[str]:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = []
            for _ in range(25):
                response = client.post("/api/jobs", json={"task": "record",
                                                          "params": {"path": str(runs)}})
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            return ids

    with ThreadPoolExecutor(20) as pool:
        submitted = [job_id for ids in pool.map(submit_batch, range(20)) for job_id in ids]
    assert len(set(submitted)) == 500

    client = server.client()
    wait_until(lambda: len(all_jobs(client, status="succeeded")) == 500, 60,
               interval=0.25, message="500 jobs to succeed")
    executions = [line.split()[0] for line in runs.read_text().splitlines()]
    assert sorted(executions) == sorted(submitted)  # every job ran, none twice


def test_sleep_jobs_run_in_parallel_up_to_the_slot_count(serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    client = server.client()
    spans = tmp_path / "spans.txt"
    ids = [submit(client, "span", path=str(spans), seconds=0.4)["id"] for _ in range(6)]
    for job_id in ids:
        assert wait_finished(client, job_id)["status"] == "succeeded"

    timeline = sorted((float(at), 1 if kind == "start" else -1)
                      for kind, at, _ in (line.split() for line in spans.read_text().splitlines()))
    running = peak = 0
    for _, delta in timeline:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_a_failing_task_fails_with_its_message_and_no_traceback(serve) -> None:
    client = serve(slots=1).client()
    job = client.post("/api/jobs", json={"task": "fail", "params": {"message": "no PDF here"}})
    assert job.status_code == 202
    ended = wait_finished(client, job.json()["id"])
    assert (ended["status"], ended["error_code"]) == ("dead", "task_error")
    assert ended["error"] == "TaskFailed: no PDF here"
    assert ended["attempts"] == 1
    raw = client.get(f"/api/jobs/{ended['id']}").text
    assert "Traceback" not in raw and "File \"" not in raw


def test_retries_run_until_max_attempts(serve) -> None:
    client = serve(slots=1).client()
    job = client.post("/api/jobs", json={"task": "fail", "max_attempts": 3,
                                         "backoff_base": 0.2, "backoff_max": 0.4}).json()
    assert (job["backoff_base"], job["backoff_max"]) == (0.2, 0.4)
    ended = wait_finished(client, job["id"])
    assert (ended["status"], ended["attempts"], ended["max_attempts"]) == ("dead", 3, 3)
    history = ended["attempts_history"]
    assert [(h["attempt"], h["outcome"], h["error_code"]) for h in history] == [
        (n, "failed", "task_error") for n in (1, 2, 3)]
    # Each retry waited its backoff: 0.2 s doubling, with jitter down to half of it (counted
    # from the attempt's end in the pool; `ended_at` is written a moment later).
    gaps = [later["started_at"] - earlier["ended_at"]
            for earlier, later in zip(history, history[1:], strict=False)]
    assert gaps[0] >= 0.1 - 0.05 and gaps[1] >= 0.2 - 0.05, gaps


@pytest.mark.both_backends
def test_results_progress_and_logs_reach_the_job_and_its_events(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    job = submit(client, "report", steps=3)
    ended = wait_finished(client, job["id"])
    assert (ended["status"], ended["result"], ended["progress"]) == ("succeeded", 3, 1.0)
    assert ended["started_at"] <= ended["finished_at"]

    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _parse_sse(stream.iter_lines())
    kinds = [e["event"] for e in events]
    assert kinds.count("log") == 3 and "progress" in kinds
    states = [e["data"]["status"] for e in events if e["event"] == "state"]
    assert states == ["running", "succeeded"]
    assert [e["data"]["message"] for e in events if e["event"] == "log"] == [
        "step 1", "step 2", "step 3"]

    # Resuming after an event id returns exactly the events after it.
    middle = events[2]["id"]
    with client.stream("GET", f"/api/jobs/{job['id']}/events",
                       headers={"Last-Event-ID": middle}) as stream:
        resumed = _parse_sse(stream.iter_lines())
    assert [e["id"] for e in resumed] == [e["id"] for e in events[3:]]


def test_events_stream_live_until_the_job_ends(serve) -> None:
    client = serve(slots=1).client()
    job = submit(client, "sleep", seconds=0.5)
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        events = _parse_sse(stream.iter_lines())
    assert events[-1]["event"] == "state" and events[-1]["data"]["status"] == "succeeded"


@pytest.mark.both_backends
def test_cancel_a_queued_and_a_running_job(serve) -> None:
    client = serve(slots=1).client()
    running = submit(client, "sleep", seconds=30)
    queued = client.post("/api/jobs", json={"task": "noop"}).json()
    wait_running(client, running["id"])

    answer = client.post(f"/api/jobs/{queued['id']}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{queued['id']}/cancel").status_code == 200  # harmless twice

    answer = client.post(f"/api/jobs/{running['id']}/cancel")
    assert answer.status_code == 202 and answer.json()["cancel_requested"] is True
    ended = wait_finished(client, running["id"], timeout=10)
    assert ended["status"] == "cancelled"
    assert ended["finished_at"] - ended["started_at"] < 10  # stopped, not slept out

    done = client.post("/api/jobs", json={"task": "noop"}).json()
    wait_finished(client, done["id"])
    conflict = client.post(f"/api/jobs/{done['id']}/cancel")
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "already_finished"
    assert conflict.json()["status"] == "succeeded"


def test_a_job_that_ignores_cancel_is_killed_after_the_grace(serve, tmp_path: Path) -> None:
    server = serve(slots=2, env={"SCHOLARSOURCE_CANCEL_GRACE": "0.5"})
    client = server.client()
    neighbour = submit(client, "span", path=str(tmp_path / "n.txt"), seconds=2)
    stubborn_ignores = submit(client, "span", path=str(tmp_path / "s.txt"), seconds=60)
    wait_running(client, stubborn_ignores["id"])
    client.post(f"/api/jobs/{stubborn_ignores['id']}/cancel")
    ended = wait_finished(client, stubborn_ignores["id"], timeout=10)
    assert ended["status"] == "cancelled"
    assert wait_finished(client, neighbour["id"])["status"] == "succeeded"


def test_priority_orders_the_queue(serve, tmp_path: Path) -> None:
    client = serve(slots=1).client()
    order = tmp_path / "order.txt"
    blocker = submit(client, "sleep", seconds=0.5)
    wait_running(client, blocker["id"])
    low = client.post("/api/jobs", json={"task": "record", "params": {"path": str(order)},
                                         "priority": -5}).json()
    high = client.post("/api/jobs", json={"task": "record", "params": {"path": str(order)},
                                          "priority": 5}).json()
    wait_finished(client, low["id"])
    assert [line.split()[0] for line in order.read_text().splitlines()] == [high["id"], low["id"]]


@pytest.mark.both_backends
def test_listing_filters_and_pages(serve) -> None:
    client = serve(slots=1).client()
    ids = [submit(client, "echo", i=i)["id"]
           for i in range(5)]
    for job_id in ids:
        wait_finished(client, job_id)
    page = client.get("/api/jobs", params={"limit": 2, "task": "echo"}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = all_jobs(client, task="echo")
    assert [j["id"] for j in rest] == ids[::-1]
    assert client.get("/api/jobs", params={"status": "dead"}).json()["jobs"] == []
    assert all(j["result"] == j["params"] for j in rest)


def test_health_names_the_process_tree(serve) -> None:
    server = serve(slots=2, workers=2)
    # Gunicorn forks its workers one by one; the first may answer before the second exists.
    health = wait_until(lambda: len((h := server.health())["processes"]["api"]) == 2 and h,
                        message="both API workers")
    processes = health["processes"]
    assert health["workers"] == 2  # as sized, so a client knows how many to expect
    assert processes["master"] == server.proc.pid
    assert len(processes["api"]) == 2 and len(processes["slots"]) == 2
    assert processes["pool"] not in processes["api"]
    assert health["pool"]["slots"] == 2
    spec = server.client().get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/jobs" in spec["paths"]


def _parse_sse(lines: Any) -> list[dict[str, Any]]:
    events, current = [], {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
                current = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        current[key] = json.loads(value) if key == "data" else value
    return events


def test_a_job_past_its_timeout_is_stopped_and_fails(serve, tmp_path: Path) -> None:
    client = serve(slots=2).client()
    neighbour = submit(client, "span", path=str(tmp_path / "n.txt"), seconds=1.5)
    slow = client.post("/api/jobs", json={"task": "span", "timeout": 0.5, "max_attempts": 2,
                                          "backoff_base": 0.1,
                                          "params": {"path": str(tmp_path / "s.txt"),
                                                     "seconds": 30}}).json()
    assert slow["timeout"] == 0.5
    ended = wait_finished(client, slow["id"], timeout=15)
    assert (ended["status"], ended["attempts"], ended["error_code"]) == ("dead", 2, "timeout")
    assert ended["error"] == "timeout: still running after 0.5s"
    assert wait_finished(client, neighbour["id"])["status"] == "succeeded"


def test_a_job_shows_its_resource_figures(serve) -> None:
    client = serve(slots=1).client()
    # A fixed amount of work (~0.3 s of one idle core here), not a wall-clock burn: on a
    # loaded box a burn of N seconds gets only a share of a core, and its CPU time with it.
    burn = client.post("/api/jobs", json={"task": "cpu", "params": {"loops": 8000}}).json()
    assert (burn["wait_time"], burn["run_time"], burn["cpu_time"]) == (None, None, None)
    done = wait_finished(client, burn["id"], timeout=60)
    assert done["wait_time"] == pytest.approx(done["started_at"] - done["created_at"], abs=1e-5)
    assert 0.05 < done["cpu_time"] <= done["run_time"] + 0.05
    assert done["peak_rss"] > 10 * 1024**2
    (attempt,) = done["attempts_history"]
    assert attempt["cpu_time"] == done["cpu_time"] and attempt["peak_rss"] == done["peak_rss"]


def test_each_attempt_reports_its_own_peak_memory(serve) -> None:
    # One slot, so the small job runs in the process the big one has just left: its peak is
    # its own (the mark is reset for each attempt), not the 200 MiB held before it.
    client = serve(slots=1).client()
    big = client.post("/api/jobs", json={"task": "memory",
                                         "params": {"mb": 200, "seconds": 0}}).json()
    small = client.post("/api/jobs", json={"task": "noop"}).json()
    big, small = wait_finished(client, big["id"]), wait_finished(client, small["id"])
    assert big["status"] == small["status"] == "succeeded"
    assert big["peak_rss"] > 200 * 1024**2
    assert small["peak_rss"] < big["peak_rss"] - 150 * 1024**2, (small, big)
