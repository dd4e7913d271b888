"""A claim that commits but never reaches a slot, through a real `scholarsource serve` on both
stores: the pool renews only the leases its slots hold, so that job's lease runs out and the
pool's own sweep runs it again, uncharged (it used to stay `running` until the pool restarted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.jobs_api import wait_finished, wait_running

pytestmark = pytest.mark.e2e

LEASE = 1.5


@pytest.mark.both_backends
def test_a_job_whose_claim_was_lost_runs_again_once_its_lease_expires(
        serve, tmp_path: Path) -> None:
    fault = tmp_path / "fail-next-parent-read"
    server = serve(slots=2, env={"SCHOLARSOURCE_LEASE_SECONDS": str(LEASE),
                                 "SCHOLARSOURCE_TASK_MODULES": "sample_tasks,lost_claim",
                                 "LOST_CLAIM_FAULT": str(fault)})
    client = server.client()
    parent = client.post("/api/jobs", json={"task": "add", "params": {"digit": 4}}).json()
    assert wait_finished(client, parent["id"])["status"] == "succeeded"
    # A neighbour runs past several leases in one slot: the pool renews what its slots hold.
    neighbour = client.post("/api/jobs", json={"task": "add",
                                               "params": {"seconds": 3 * LEASE}}).json()
    wait_running(client, neighbour["id"])
    # The child's claim commits; reading its parent's artifacts then fails, so the pool
    # never hands it to the other slot.
    fault.touch()
    child = client.post("/api/jobs", json={"task": "add", "params": {"digit": 2},
                                           "depends_on": [parent["id"]],
                                           "max_attempts": 2}).json()
    ended = wait_finished(client, child["id"])
    assert not fault.exists(), "the fault never fired"
    assert (ended["status"], ended["result"], ended["attempts"]) == ("succeeded", 42, 2)
    assert [h["outcome"] for h in ended["attempts_history"]] == ["interrupted", "succeeded"]
    # Never started, so not charged: one lost answer cannot bring a job nearer max_crashes.
    assert (ended["attempts_history"][0]["error_code"], ended["crashes"]) == (
        "lease_expired", 0)
    assert "re-queued 1 job(s) whose lease expired" in server.log()
    kept = wait_finished(client, neighbour["id"])
    assert (kept["status"], kept["attempts"], kept["crashes"]) == ("succeeded", 1, 0)
