"""Delayed jobs and the states a client reads (issue 11 §1 and §3), through a real server:
a job due later is `scheduled`, starts at its time (never before, within poll_interval
after), can be listed and cancelled; what a submit cannot mean is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from scholarsource.exitcodes import EXIT_OK
from tests.conftest import server_env
from tests.e2e.jobs_api import all_jobs, wait_finished
from tests.e2e.test_submit_checks import refused

pytestmark = pytest.mark.e2e

POLL_INTERVAL = 0.5  # the default, set here so the bound below says what it assumes
MARGIN = 0.5  # a loaded 2-core box: claim, slot start-up, the write of started_at


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def started_late_by(client: httpx.Client, job: dict[str, Any]) -> float:
    """How long after its run_at (as the submit answered) the job started, by the server's
    own clock."""
    done = wait_finished(client, job["id"])
    assert done["status"] == "succeeded" and done["final"] is True
    late: float = done["started_at"] - job["run_at"]
    return late


@pytest.mark.both_backends
def test_a_delayed_job_starts_at_its_time_never_before(serve) -> None:
    client = serve(slots=3, env={"SCHOLARSOURCE_POLL_INTERVAL": str(POLL_INTERVAL)}).client()
    soon = time.time() + 2
    jobs = [post(client, {"task": "noop", "delay": 2}),
            post(client, {"task": "noop", "run_at": soon}),
            post(client, {"task": "noop",
                          "run_at": datetime.fromtimestamp(soon, UTC).isoformat()})]
    for job in jobs:
        assert (job["status"], job["final"]) == ("scheduled", False)
        assert job["run_at"] > job["created_at"]
    assert jobs[1]["run_at"] == soon and jobs[2]["run_at"] == pytest.approx(soon)
    listed = {j["id"] for j in all_jobs(client, status="scheduled")}
    assert listed == {j["id"] for j in jobs}
    for job in jobs:
        late = started_late_by(client, job)
        assert 0 <= late <= POLL_INTERVAL + MARGIN, (job, late)
    # A time already come is no wait: queued at once.
    due = post(client, {"task": "noop", "run_at": "2020-01-01T00:00:00+00:00"})
    assert (due["status"], due["run_at"]) == ("queued", None)
    assert wait_finished(client, due["id"])["status"] == "succeeded"


def test_a_submit_wakes_the_pool_for_an_earlier_due_time(serve) -> None:
    # The pool polls every 3 s and already sleeps until a job due in a minute; a job due in
    # 1 s must still start on time: its submit wakes the pool, which learns the new time.
    client = serve(slots=1, env={"SCHOLARSOURCE_POLL_INTERVAL": "3"}).client()
    post(client, {"task": "noop", "delay": 60})
    job = post(client, {"task": "noop", "delay": 1})
    assert 0 <= started_late_by(client, job) <= MARGIN


def test_a_scheduled_job_is_cancelled_and_shows_final(serve) -> None:
    client = serve(slots=1).client()
    job = post(client, {"task": "noop", "delay": 3600})
    compat = client.get(f"/api/status/{job['id']}").json()
    assert (compat["job_id"], compat["status"], compat["final"]) == (
        job["id"], "scheduled", False)
    metrics = client.get("/metrics").text
    assert 'scholarsource_queue_jobs{queue="default",status="scheduled"} 1.0' in metrics
    assert 'status="failed"' not in metrics
    cancelled = client.post(f"/api/cancel/{job['id']}")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["final"]) == ("cancelled", True)
    assert all_jobs(client, status="scheduled") == []
    assert client.get(f"/api/jobs/{job['id']}").json()["started_at"] is None


def test_a_delayed_submit_that_cannot_be_read_is_refused(serve) -> None:
    client = serve(slots=1).client()
    for body, code in (({"delay": 5, "run_at": time.time() + 5}, "delay_and_run_at"),
                       ({"run_at": "next tuesday"}, "invalid_run_at"),
                       ({"run_at": "2030-01-01T09:00:00"}, "run_at_without_zone"),
                       ({"delay": -1}, "invalid_delay"),
                       ({"delay": "5"}, "invalid_delay"),
                       ({"run_at": True}, "invalid_run_at"),
                       ({"run_at": 1e13}, "invalid_run_at")):
        answer = refused(client, {"task": "noop", **body}, code)
        assert answer["message"] and "Traceback" not in answer["message"]
    assert all_jobs(client) == []


def test_the_cli_submits_delayed_jobs_and_waits_on_final(serve) -> None:
    server = serve(slots=1)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scholarsource", *args, "--url",
                               server.url], capture_output=True, text=True,
                              env=server_env(), timeout=60)

    later = cli("submit", "noop", "--run-at", "2100-01-01T00:00:00Z", "--json")
    assert later.returncode == EXIT_OK, later.stderr
    job = json.loads(later.stdout)
    assert (job["status"], job["run_at"]) == ("scheduled", 4102444800.0)
    shown = cli("status", job["id"])
    assert "scheduled" in shown.stdout and "starts in" in shown.stdout
    epoch = json.loads(cli("submit", "noop", "--run-at", "4102444800", "--json").stdout)
    assert (epoch["status"], epoch["run_at"]) == ("scheduled", 4102444800.0)
    # --wait polls until the job says it is final, through the scheduled state.
    waited = cli("submit", "noop", "--delay", "0.5", "--wait", "--json")
    assert waited.returncode == EXIT_OK, waited.stderr
    done = json.loads(waited.stdout)
    assert (done["status"], done["final"]) == ("succeeded", True)
    # (run_at is read from the request a moment before created_at is stamped: hence 0.4)
    assert done["started_at"] >= done["created_at"] + 0.4
    refused = cli("submit", "noop", "--delay", "1", "--run-at", "4102444800")
    assert refused.returncode != EXIT_OK and "delay_and_run_at" in refused.stderr
