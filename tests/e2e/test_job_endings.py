"""How an ended job reads: sizes in the README's units, and a cancelled job keeps what its
task returned."""

from __future__ import annotations

import re

import pytest

from tests.e2e.jobs_api import submit, wait_finished, wait_running

pytestmark = pytest.mark.e2e


def test_a_memory_limit_is_reported_in_the_units_it_was_given_in(serve) -> None:
    # Issue 9 §4: memory_limit "100MB" was reported as "over the limit of 95 MB".
    server = serve(slots=1)
    client = server.client()
    response = client.post("/api/jobs", json={"task": "memory", "memory_limit": "100MB",
                                              "params": {"mb": 300, "seconds": 20}})
    assert response.status_code == 202, response.text
    job = wait_finished(client, response.json()["id"])
    assert (job["status"], job["error_code"]) == ("dead", "memory_limit")
    assert job["error"].endswith("over the limit of 100 MB"), job["error"]
    used = re.search(r"used ([\d.]+) MB", job["error"])
    assert used and float(used.group(1)) > 100
    assert re.search(r"over its memory limit \([\d.]+ MB > 100 MB\)", server.log())


@pytest.mark.both_backends
def test_a_cancelled_job_keeps_what_its_task_returned(serve) -> None:
    # The README's example task returns {"partial": True} once cancelled.
    server = serve(slots=1)
    client = server.client()
    job = submit(client, "partial", seconds=30)
    wait_running(client, job["id"])
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 202
    ended = wait_finished(client, job["id"])
    assert (ended["status"], ended["result"]) == ("cancelled", {"partial": True})
    assert ended["attempts_history"][-1]["outcome"] == "cancelled"
