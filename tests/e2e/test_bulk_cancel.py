"""Cancelling many jobs at once, against a real server: POST /api/jobs/cancel and the
`cancel-jobs` command, with the filtered listing that shows what they did."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from scholarsource.exitcodes import EXIT_OK
from tests.conftest import server_env
from tests.e2e.jobs_api import all_jobs, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def statuses(client: httpx.Client) -> dict[str, str]:
    return {job["id"]: job["status"] for job in all_jobs(client)}


@pytest.mark.both_backends
def test_cancel_many_jobs_by_filter_through_the_api_and_the_cli(serve) -> None:
    server = serve(slots=2)
    client = server.client()
    # A job waiting 60 s for its next attempt, then both slots held, so the rest stay queued.
    retrying = post(client, {"task": "fail", "max_attempts": 3, "backoff_base": 60})
    wait_until(lambda: client.get(f"/api/jobs/{retrying['id']}").json()["status"]
               == "retrying", message="the first attempt to fail")
    later = [post(client, {"task": "noop", "delay": 3600}) for _ in range(2)]
    holders = [post(client, {"task": "sleep", "params": {"seconds": 60}}) for _ in range(2)]
    for holder in holders:
        wait_running(client, holder["id"])
    bulk = [post(client, {"task": "noop", "queue": "bulk"}) for _ in range(3)]
    echoes = [post(client, {"task": "echo", "params": {"n": n}}) for n in range(2)]

    # Rejected requests name the problem and change nothing.
    before = statuses(client)
    for body, code in (({}, "filter_required"), ({"all": False}, "invalid_request"),
                       ({"status": "succeeded"}, "invalid_request"),
                       ({"task": ""}, "invalid_request"), ({"tasks": "noop"}, "invalid_request"),
                       ([], "invalid_request")):
        refused = client.post("/api/jobs/cancel", json=body)
        assert (refused.status_code, refused.json()["error"]) == (422, code), body
    broken = client.post("/api/jobs/cancel", content=b"{",
                         headers={"Content-Type": "application/json"})
    assert (broken.status_code, broken.json()["error"]) == (400, "malformed_json")
    assert client.get("/api/jobs/cancel").json()["error"] == "not_found"  # no job named so
    assert statuses(client) == before

    # One queue; the listing filtered by it shows the result (and reads its index).
    answer = client.post("/api/jobs/cancel", json={"queue": "bulk"})
    assert answer.status_code == 200 and answer.json() == {"cancelled": 3, "cancel_requested": 0}
    listed = all_jobs(client, queue="bulk", status="cancelled")
    assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in bulk)
    assert all(j["error_code"] == "cancelled" and j["finished_at"] for j in listed)

    # The job waiting for its retry is cancelled at once, its backoff dropped; so are the
    # jobs waiting for their time, and only they.
    assert client.post("/api/jobs/cancel", json={"status": "retrying"}).json() == {
        "cancelled": 1, "cancel_requested": 0}
    cancelled = client.get(f"/api/jobs/{retrying['id']}").json()
    assert (cancelled["status"], cancelled["run_at"]) == ("cancelled", None)
    assert {statuses(client)[j["id"]] for j in later} == {"scheduled"}
    assert client.post("/api/jobs/cancel", json={"status": "scheduled"}).json() == {
        "cancelled": 2, "cancel_requested": 0}
    assert {statuses(client)[j["id"]] for j in later} == {"cancelled"}

    # The CLI asks first, and does nothing on "no" or without a filter.
    def cli(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scholarsource", "cancel-jobs", *args,
                               "--url", server.url], input=answer, capture_output=True,
                              text=True, env=server_env(), timeout=60)

    declined = cli("--task", "echo", answer="n\n")
    assert declined.returncode != EXIT_OK and "cancel every scheduled, queued" in declined.stdout
    unfiltered = cli()
    assert unfiltered.returncode == 2 and "--all" in unfiltered.stderr  # click's usage error
    assert {statuses(client)[j["id"]] for j in echoes} == {"queued"}
    done = cli("--task", "echo", "--yes")
    assert done.returncode == EXIT_OK, done.stderr
    assert "cancelled 2 job(s), asked 0 running job(s) to stop" in done.stdout
    assert [j["id"] for j in all_jobs(client, task="echo")] == [j["id"] for j in echoes[::-1]]
    assert {j["status"] for j in all_jobs(client, task="echo")} == {"cancelled"}

    # "all": the running ones are asked to stop, and end cancelled.
    assert client.post("/api/jobs/cancel", json={"all": True}).json() == {
        "cancelled": 0, "cancel_requested": 2}
    for holder in holders:
        assert wait_finished(client, holder["id"])["status"] == "cancelled"
    assert set(statuses(client).values()) == {"cancelled"}
