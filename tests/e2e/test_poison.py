"""Nothing one job carries ends the pool, and a job that does end it pays alone.

Jobs are written straight into the store where the API would refuse them (it checks depth
and size at the door), so these tests exercise the pool's own guards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import stored, submit, wait_finished, write_queued
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def _insert(server: Server, task: str, params_json: str, max_attempts: int = 1) -> str:
    """A queued job written into the database directly, past the API's checks."""
    job_id = write_queued(server, task, params_json, max_attempts)
    server.client().post("/api/jobs", json={"task": "noop"})  # a poke: the pool looks now
    return job_id


def _row(server: Server, job_id: str) -> dict[str, Any]:
    return stored(server, job_id, "status", "error_code", "error", "crashes")


def _wait_row_final(server: Server, job_id: str) -> dict[str, Any]:
    return wait_until(lambda: (row := _row(server, job_id))["status"] in
                      {"succeeded", "dead", "cancelled"} and row, 30,
                      message=f"job {job_id} to end")


def _sleeper(client: httpx.Client, seconds: float) -> str:
    response = client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": seconds},
                                              "max_attempts": 5})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _pool_pid(server: Server) -> int:
    pid: int = server.health()["processes"]["pool"]
    return pid


def test_the_1kb_poison_submit_leaves_the_pool_and_its_neighbour_alone(serve) -> None:
    # Issue 10's reproduction: params nested 500 deep crashed the pool three times while
    # pickling them, and the innocent sleep job beside it died with 3 crashes.
    server = serve(slots=2)
    client = server.client()
    pool = _pool_pid(server)
    innocent = _sleeper(client, 2)
    depth = 500
    poison = _insert(server, "echo", '{"a":' + "[" * depth + "]" * depth + "}")
    deeper = _insert(server, "echo", '{"a":' + "[" * 100_000 + "]" * 100_000 + "}")

    assert _wait_row_final(server, poison)["status"] == "succeeded"
    ended = _wait_row_final(server, deeper)
    assert (ended["status"], ended["error_code"]) == ("dead", "bad_params")
    job = wait_finished(client, innocent)
    assert (job["status"], job["crashes"], job["failures"]) == ("succeeded", 0, 0)
    assert _pool_pid(server) == pool
    assert "respawning the pool" not in server.log()


@pytest.mark.parametrize("kind", ["nan", "infinity", "surrogate", "set", "deep"])
def test_a_result_with_no_json_form_fails_its_attempt_with_result_not_json(
        serve, kind: str) -> None:
    server = serve(slots=1)
    client = server.client()
    pool = _pool_pid(server)
    job = wait_finished(client, submit(client, "strange", kind=kind)["id"])
    assert (job["status"], job["error_code"], job["result"]) == ("dead", "result_not_json", None)
    assert job["error"].startswith("result_not_json: ")
    # The job and the listing still render, and the pool is the same process.
    assert client.get("/api/jobs").status_code == 200
    assert _pool_pid(server) == pool


def test_odd_reports_fail_their_own_attempt_and_the_pool_lives_on(serve) -> None:
    server = serve(slots=2, env={"SCHOLARSOURCE_MAX_RESULT_BYTES": "1MiB"})
    client = server.client()
    pool = _pool_pid(server)
    innocent = _sleeper(client, 1.5)
    expected = {"nan_progress": "task_error", "nan_note": "bad_message",
                "huge_note": "message_too_large", "forged_end": "bad_message"}
    ids = {kind: submit(client, "odd_report", kind=kind)["id"] for kind in expected}
    for kind, code in expected.items():
        job = wait_finished(client, ids[kind])
        assert (job["status"], job["error_code"]) == ("dead", code), job
    assert "ValueError: progress must be a finite number" in \
        client.get(f"/api/jobs/{ids['nan_progress']}").json()["error"]
    job = wait_finished(client, innocent)
    assert (job["status"], job["crashes"]) == ("succeeded", 0)
    assert _pool_pid(server) == pool


def test_lone_surrogates_in_logs_and_progress_are_stored_escaped(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    job = wait_finished(client, submit(client, "odd_report", kind="surrogates")["id"])
    assert job["status"] == "succeeded"
    assert job["progress_message"] == "progress \\ud800 message"
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        data = [json.loads(line.partition(": ")[2]) for line in stream.iter_lines()
                if line.startswith("data: ")]
    assert "log \\udc80 line" in [event.get("message") for event in data]


def test_a_job_that_keeps_killing_the_pool_dies_alone(serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    client = server.client()
    runs = tmp_path / "runs.txt"
    innocent = _sleeper(client, 1.0)
    response = client.post("/api/jobs", json={"task": "pool_killer",
                                              "params": {"path": str(runs)}, "max_attempts": 5})
    assert response.status_code == 202, response.text
    killer = response.json()["id"]

    def final(job_id: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        except httpx.HTTPError:
            return None
        return job if job["status"] in {"succeeded", "dead", "cancelled"} else None

    dead = wait_until(lambda: final(killer), 60, message="the pool killer to end")
    # Three pool deaths, each charged to the job being handled as it happened.
    assert (dead["status"], dead["crashes"], dead["error_code"]) == ("dead", 3, "pool_died")
    assert [a["outcome"] for a in dead["attempts_history"]] == ["crashed"] * 3
    assert len(runs.read_text().splitlines()) == 3
    job = wait_until(lambda: final(innocent), 60, message="the innocent job to end")
    assert (job["status"], job["crashes"], job["failures"]) == ("succeeded", 0, 0)
    # It really ran beside the killer: the pool's deaths interrupted it, uncharged.
    assert "interrupted" in [a["outcome"] for a in job["attempts_history"]]
    assert server.log().count("the previous pool died while handling job") == 3
