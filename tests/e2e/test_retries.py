"""Retry policies, dead letters, slot recycling and a config reload, against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scholarsource.exitcodes import EXIT_OK
from tests.conftest import server_env
from tests.e2e.jobs_api import submit, wait_finished
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

# How much later than the end of an attempt its `ended_at` may be written (a batched write).
WRITE_DELAY = 0.05


def test_a_task_asks_for_retries_and_its_declared_defaults_apply(serve) -> None:
    client = serve(slots=1).client()
    job = submit(client, "flaky", succeed_on=3, after=0.3)
    assert (job["max_attempts"], job["backoff_base"], job["memory_limit"]) == (4, 0.05, 10**9)
    seen = wait_until(lambda: (j := client.get(f"/api/jobs/{job['id']}").json())["status"]
                      == "retrying" and j, message="a failed attempt waiting for its retry")
    assert seen["error_code"] == "retry" and seen["run_at"] > seen["attempts_history"][0][
        "ended_at"]
    assert seen["final"] is False  # a client sees at once that it will run again
    done = wait_finished(client, job["id"])
    assert (done["status"], done["result"], done["failures"]) == ("succeeded", 3, 2)
    history = done["attempts_history"]
    assert [h["error"] for h in history] == [
        "retry requested: not yet (1)", "retry requested: not yet (2)", None]
    # Retry(after=0.3) counts from when the attempt ended in the pool; `ended_at` is when
    # that was written, a moment later.
    for earlier, later in zip(history, history[1:], strict=False):
        assert later["started_at"] - earlier["ended_at"] >= 0.3 - WRITE_DELAY
    assert all(h["peak_rss"] > 0 for h in history)


@pytest.mark.both_backends
def test_dead_letters_can_be_listed_retried_and_purged(serve) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_BACKOFF_BASE": "0.05"})
    client = server.client()
    doomed = [submit(client, "fail", message=f"no {i}")["id"] for i in range(3)]
    for job_id in doomed:
        wait_finished(client, job_id)
    listed = client.get("/api/jobs", params={"status": "dead"}).json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(doomed)

    again = client.post(f"/api/jobs/{doomed[0]}/retry")
    assert again.status_code == 200 and again.json()["status"] == "queued"
    assert again.json()["failures"] == 0
    rerun = wait_finished(client, doomed[0])
    assert (rerun["status"], rerun["attempts"], len(rerun["attempts_history"])) == ("dead", 2, 2)
    ok = submit(client, "noop")
    wait_finished(client, ok["id"])
    refused = client.post(f"/api/jobs/{ok['id']}/retry")
    assert (refused.status_code, refused.json()["error"]) == (409, "not_retryable")
    assert client.post("/api/jobs/nope/retry").status_code == 404

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scholarsource", *args, "--url",
                               server.url], capture_output=True, text=True, env=server_env(),
                              timeout=60)

    listing = cli("dlq", "list")
    assert listing.returncode == EXIT_OK and all(job_id in listing.stdout for job_id in doomed)
    assert "re-queued 3 job(s)" in cli("dlq", "retry", "--all").stdout
    for job_id in doomed:
        wait_until(lambda i=job_id: client.get(f"/api/jobs/{i}").json()["status"] == "dead",
                   message="the retried job to die again")
    assert cli("dlq", "retry").returncode != EXIT_OK  # neither an id nor --all
    assert "purged 3 job(s)" in cli("dlq", "purge", "--yes").stdout
    assert client.get(f"/api/jobs/{doomed[0]}").status_code == 404
    assert client.get(f"/api/jobs/{ok['id']}").json()["status"] == "succeeded"


def test_slots_are_recycled_between_jobs_without_failing_any(serve, tmp_path: Path) -> None:
    client = serve(slots=1, env={"SCHOLARSOURCE_MAX_JOBS_PER_SLOT": "3"}).client()
    pids = [wait_finished(client, submit(client, "leaky")["id"])["result"] for _ in range(7)]
    assert len(set(pids[0:3])) == len(set(pids[3:6])) == 1 and len(set(pids)) == 3

    client = serve(slots=1, data_dir=tmp_path / "other",
                   env={"SCHOLARSOURCE_MAX_SLOT_MEMORY": "150MB"}).client()
    first = wait_finished(client, submit(client, "leaky", mb=200)["id"])
    assert first["status"] == "succeeded"
    # Over max_slot_memory once idle: the next job gets a fresh process.
    wait_until(lambda: wait_finished(client, submit(client, "leaky")["id"])["result"]
               != first["result"], message="a fresh slot process")


def test_sighup_reloads_the_config_and_loses_or_repeats_no_job(serve, tmp_path: Path) -> None:
    config = tmp_path / "scholarsource.toml"
    config.write_text("max_attempts = 1\n")
    server = serve(slots=1, args=("--config", str(config)))
    client = server.fresh_client()
    runs = tmp_path / "runs.log"
    running = submit(client, "mark", path=str(runs), seconds=1)
    config.write_text("max_attempts = 4\n")
    server.signal(signal.SIGHUP)
    assert wait_until(lambda: client.post("/api/jobs", json={"task": "noop"}).json()[
        "max_attempts"] == 4, 20, message="new API workers with the new config")
    assert wait_finished(client, running["id"])["status"] == "succeeded"
    assert runs.read_text().split() == [running["id"], "1"]  # ran once

    config.write_text("max_attempts = 0\n")  # invalid: the running config stays
    server.signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running one" in server.log(), message="the refusal")
    assert client.post("/api/jobs", json={"task": "noop"}).json()["max_attempts"] == 4
    assert os.path.exists(server.data_dir / "scholarsource.db")
