"""Retention through a real server: finished jobs go after their age, with their events and
idempotency keys; jobs that are not finished stay, however old."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import pytest

from tests.e2e.jobs_api import query
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

ONE_SECOND = {f"SCHOLARSOURCE_RETENTION_{state}": "1s"
              for state in ("SUCCEEDED", "CANCELLED", "DEAD")}
ONE_SECOND["SCHOLARSOURCE_GRACE_PERIOD"] = "0"  # the long sleep need not delay the teardown


@pytest.mark.both_backends
def test_a_pruned_job_answers_404_and_its_key_makes_a_new_job(serve) -> None:
    server = serve(slots=2, env=ONE_SECOND)
    client = server.client()
    running = client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 60}})
    order = {"task": "echo", "params": {"order": 42}}
    first = client.post("/api/jobs", json=order, headers={"Idempotency-Key": "order-42"})
    dead = client.post("/api/jobs", json={"task": "fail"})
    assert [r.status_code for r in (running, first, dead)] == [202] * 3
    job_id, dead_id = first.json()["id"], dead.json()["id"]
    wait_until(lambda: client.get(f"/api/jobs/{job_id}").json().get("status") == "succeeded",
               15, message="the echo job to succeed")
    assert client.get(f"/api/jobs/{job_id}/events").status_code == 200

    gone = wait_until(lambda: (r := client.get(f"/api/jobs/{job_id}")).status_code == 404 and r,
                      15, message="retention to prune the succeeded job")
    assert gone.json()["error"] == "not_found"
    assert client.get(f"/api/status/{job_id}").status_code == 404
    events = client.get(f"/api/jobs/{job_id}/events")
    assert (events.status_code, events.json()["error"]) == (404, "not_found")
    wait_until(lambda: client.get(f"/api/jobs/{dead_id}").status_code == 404, 15,
               message="retention to prune the dead job")

    # The key went with the job: the same submit now makes a new one, not a replay.
    again = client.post("/api/jobs", json=order, headers={"Idempotency-Key": "order-42"})
    assert again.status_code == 202 and "idempotent-replayed" not in again.headers
    assert again.json()["id"] != job_id

    # Older than every retention, but not finished: still there.
    assert client.get(f"/api/jobs/{running.json()['id']}").json()["status"] == "running"
    assert query(server, "SELECT count(*) FROM job_events WHERE job_id IN (?, ?)",
                 job_id, dead_id) == [(0,)]


def _submit_until(url: str, stop: threading.Event, answers: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            answers.append(client.post("/api/jobs", json={"task": "noop"}).status_code)


@pytest.mark.both_backends
def test_prune_on_demand_while_the_server_takes_submits(serve) -> None:
    server = serve(slots=2)  # the default retention: nothing is a week old yet
    client = server.client()
    old = [client.post("/api/jobs", json={"task": "echo", "params": {"i": i}}).json()["id"]
           for i in range(50)]
    wait_until(lambda: all(client.get(f"/api/jobs/{j}").json()["status"] == "succeeded"
                           for j in old), 30, message="the first jobs to succeed")
    answers: list[int] = []
    stop = threading.Event()
    load = threading.Thread(target=_submit_until, args=(server.url, stop, answers))
    load.start()
    try:
        def pruned() -> bool:
            """Every old job is gone; else run `scholarsource prune` once more (they are
            older than 1 s a moment after they finished)."""
            if all(client.get(f"/api/jobs/{j}").status_code == 404 for j in old):
                return True
            done = subprocess.run(
                [sys.executable, "-m", "scholarsource", "prune", "--data-dir",
                 str(server.data_dir), "--older-than", "1s"],
                env=server.cli_env(), capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and done.stdout.startswith("pruned "), done.stderr
            return False

        wait_until(pruned, 30, interval=0.2, message="prune to delete the first jobs")
    finally:
        stop.set()
        load.join()
    assert answers and set(answers) == {202}  # every submit meanwhile was taken
    assert server.health()["status"] == "ok"
