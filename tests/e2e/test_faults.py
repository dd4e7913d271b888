"""Faults, tested: kill -9 a slot, the pool, the whole tree; SIGTERM with jobs running."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scholarsource.exitcodes import EXIT_DATA_DIR_IN_USE, EXIT_POOL_BOOT
from tests.conftest import server_env
from tests.e2e.jobs_api import all_jobs, submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def _executions(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_9_of_the_pool_is_survived_and_every_job_completes(serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    client = server.client()
    runs = tmp_path / "runs.txt"
    ids = [submit(client, "record", path=str(runs), seconds=0.6)["id"] for _ in range(6)]
    wait_until(lambda: server.health()["pool"]["busy"] == 2, message="two running jobs")
    old_pool = server.health()["processes"]["pool"]
    old_slots = server.health()["processes"]["slots"]

    os.kill(old_pool, signal.SIGKILL)

    health = wait_until(lambda: (h := server.health())["processes"]["pool"] != old_pool
                        and h["status"] == "ok" and h, 20, message="a respawned pool")
    assert set(health["processes"]["slots"]).isdisjoint(old_slots)
    for job_id in ids:
        assert wait_finished(client, job_id, timeout=30)["status"] == "succeeded"
    # The old slots died with their pool: no job body ran after its job was re-queued
    # except the interrupted attempts, which are allowed to run again.
    wait_until(lambda: all(not Path(f"/proc/{pid}").exists() for pid in old_slots),
               message="the old slots to exit")
    assert set(_executions(runs)) == set(ids)
    assert "was killed by SIGKILL (perhaps out of memory?)" in server.log()


def test_kill_9_of_one_slot_fails_that_job_only(serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    client = server.client()
    pidfile = tmp_path / "victim.pid"
    victim = submit(client, "hold", pidfile=str(pidfile))
    neighbour = submit(client, "span", path=str(tmp_path / "n.txt"), seconds=1.5)
    victim_pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(),
                                message="the victim's pid"))
    assert victim_pid in server.health()["processes"]["slots"]
    os.kill(victim_pid, signal.SIGKILL)

    ended = wait_finished(client, victim["id"], timeout=10)
    assert (ended["status"], ended["error_code"]) == ("dead", "worker_died")
    assert ended["error"].startswith("worker_died: the job's process ended unexpectedly "
                                     "(killed by SIGKILL; RSS last seen")
    assert wait_finished(client, neighbour["id"])["status"] == "succeeded"
    # The slot was replaced: new work still runs on two slots.
    after = wait_until(lambda: len(server.health()["processes"]["slots"]) == 2
                       and server.health()["processes"]["slots"], message="a replaced slot")
    assert victim_pid not in after
    assert wait_finished(client, client.post("/api/jobs", json={"task": "noop"}).json()["id"]
                         )["status"] == "succeeded"


def test_kill_9_of_the_whole_tree_then_restart_loses_nothing(serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = serve(slots=1, data_dir=data)
    client = server.client()
    runs = tmp_path / "runs.txt"
    ids = [submit(client, "record", path=str(runs), seconds=1.0)["id"] for _ in range(4)]
    wait_running(client, ids[0])

    server.kill_tree()

    restarted = serve(slots=2, data_dir=data)
    client = restarted.client()
    for job_id in ids:
        assert wait_finished(client, job_id, timeout=30)["status"] == "succeeded"
    assert set(_executions(runs)) == set(ids)
    assert len(_executions(runs)) == 4  # the interrupted one had not written yet
    assert "re-queued 1 job(s)" in restarted.log()


def test_sigterm_drains_running_jobs_and_keeps_the_queue(serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = serve(slots=1, data_dir=data)
    client = server.client()
    runs = tmp_path / "runs.txt"
    first = submit(client, "record", path=str(runs), seconds=1.0)
    queued = [submit(client, "record", path=str(runs))["id"] for _ in range(3)]
    wait_running(client, first["id"])

    server.signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert _executions(runs) == [first["id"]]  # the running job finished; nothing else began

    restarted = serve(slots=1, data_dir=data)
    client = restarted.client()
    assert client.get(f"/api/jobs/{first['id']}").json()["status"] == "succeeded"
    for job_id in queued:
        assert wait_finished(client, job_id)["status"] == "succeeded"


def test_sigterm_past_the_grace_requeues_without_spending_an_attempt(serve, tmp_path) -> None:
    data = tmp_path / "data"
    server = serve(slots=1, data_dir=data, env={"SCHOLARSOURCE_GRACE_PERIOD": "0.5"})
    client = server.client()
    long = submit(client, "sleep", seconds=60)
    wait_running(client, long["id"])
    server.signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0

    restarted = serve(slots=1, data_dir=data, wait=False)
    restarted.wait_healthy()
    job = restarted.client().get(f"/api/jobs/{long['id']}").json()
    assert job["status"] in {"queued", "running"}
    # The interrupted attempt is on record but not charged: no failure, no crash.
    assert (job["failures"], job["crashes"]) == (0, 0)
    assert job["attempts_history"][0]["outcome"] == "interrupted"
    assert job["attempts_history"][0]["error_code"] == "interrupted"
    restarted.client().post(f"/api/jobs/{long['id']}/cancel")


def test_a_second_server_on_the_same_data_dir_refuses_to_start(serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve(slots=1, data_dir=data)
    second = subprocess.run(
        [sys.executable, "-m", "scholarsource", "serve", "--bind", "127.0.0.1:0",
         "--data-dir", str(data)], env=server_env(), capture_output=True, timeout=30,
        text=True)
    assert second.returncode == EXIT_DATA_DIR_IN_USE
    assert "in use" in second.stderr


def test_nothing_is_lost_when_the_queue_outgrows_the_slots(serve) -> None:
    server = serve(slots=2)
    client = server.client()
    ids = {client.post("/api/jobs", json={"task": "noop"}).json()["id"] for _ in range(300)}
    wait_until(lambda: len(all_jobs(client, status="succeeded")) == 300, 60, interval=0.2)
    assert {j["id"] for j in all_jobs(client)} == ids


def test_a_task_module_that_does_not_import_stops_the_server_with_its_code(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scholarsource", "serve", "--bind", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data")],
        env=server_env(SCHOLARSOURCE_TASK_MODULES="no_such_module"), capture_output=True,
        timeout=60, text=True)
    assert result.returncode == EXIT_POOL_BOOT
    assert "cannot import task module 'no_such_module'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sighup_replaces_the_pool_without_losing_or_repeating_a_job(serve, tmp_path) -> None:
    server = serve(slots=1)
    client = server.fresh_client()
    runs = tmp_path / "runs.txt"
    first = submit(client, "record", path=str(runs), seconds=0.8)
    wait_running(client, first["id"])
    old_pool = server.health()["processes"]["pool"]

    server.signal(signal.SIGHUP)
    later = [submit(client, "record", path=str(runs))["id"] for _ in range(3)]

    for job_id in [first["id"], *later]:
        assert wait_finished(client, job_id, timeout=30)["status"] == "succeeded"
    assert sorted(_executions(runs)) == sorted([first["id"], *later])  # each exactly once
    # The master reads signals about once a second: on a loaded box the old pool may run
    # every job before the HUP reaches it, so the swap itself is waited for.
    wait_until(lambda: server.health()["processes"]["pool"] not in (old_pool, None),
               timeout=30, message="a new pool")
    assert "drained for a reload" in server.log()


def test_sigterm_does_not_wait_for_open_event_streams(serve) -> None:
    # grace_period 10 makes Gunicorn's graceful timeout 15 s: an open stream on a job that
    # never ends would hold an API worker that long. The running job ends in 1 s, so the
    # pool is not what the shutdown waits for.
    server = serve(slots=1, env={"SCHOLARSOURCE_GRACE_PERIOD": "10"})
    client = server.client()
    running = submit(client, "sleep", seconds=1)
    waiting = client.post("/api/jobs", json={"task": "noop"}).json()
    wait_running(client, running["id"])
    with client.stream("GET", f"/api/jobs/{waiting['id']}/events") as stream:
        assert stream.status_code == 200
        server.signal(signal.SIGTERM)
        assert server.proc.wait(timeout=12) == 0
    assert "open request cut at shutdown" in server.log()
    assert "Exception in ASGI application" not in server.log()


def test_a_database_locked_past_the_busy_timeout_answers_503_and_recovers(serve) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_BUSY_TIMEOUT": "0.2"})
    client = server.client()
    before = client.post("/api/jobs", json={"task": "noop"}).json()
    wait_finished(client, before["id"])

    holder = sqlite3.connect(server.data_dir / "scholarsource.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # hold the write lock, as a stuck writer would
    try:
        refused = client.post("/api/jobs", json={"task": "noop"})
        assert refused.status_code == 503
        assert refused.json()["error"] == "unavailable"
        assert refused.headers["retry-after"] == "1"
        assert "Traceback" not in refused.text
        # Reads go on: WAL readers never wait for the writer.
        assert client.get(f"/api/jobs/{before['id']}").json()["status"] == "succeeded"
        assert client.get("/api/health").status_code == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    after = client.post("/api/jobs", json={"task": "noop"})
    assert after.status_code == 202
    assert wait_finished(client, after.json()["id"])["status"] == "succeeded"
    assert server.wait_healthy()["status"] == "ok"
    assert len(all_jobs(client)) == 2  # the refused submit left no row behind


def test_an_idle_slot_that_dies_is_replaced(serve) -> None:
    server = serve(slots=2)
    victim, survivor = server.health()["processes"]["slots"]
    os.kill(victim, signal.SIGKILL)
    slots = wait_until(lambda: victim not in (s := server.health()["processes"]["slots"])
                       and len(s) == 2 and s, 10, message="a replacement slot")
    assert survivor in slots
    client = server.client()
    ids = [client.post("/api/jobs", json={"task": "noop"}).json()["id"] for _ in range(4)]
    assert all(wait_finished(client, i)["status"] == "succeeded" for i in ids)
    assert "died while idle" in server.log()


def test_kill_9_of_an_api_worker_is_survived(serve) -> None:
    server = serve(slots=1, workers=2)
    before = wait_until(lambda: len((h := server.health())["processes"]["api"]) == 2 and h,
                        message="both API workers")["processes"]["api"]
    os.kill(before[0], signal.SIGKILL)
    after = wait_until(lambda: before[0] not in (a := server.health()["processes"]["api"])
                       and len(a) == 2 and a, 20, message="a replacement API worker")
    assert before[1] in after
    client = server.client()
    ids = [client.post("/api/jobs", json={"task": "noop"}).json()["id"] for _ in range(20)]
    assert all(wait_finished(client, i)["status"] == "succeeded" for i in ids)


def test_kill_9_of_the_master_alone_leaves_no_orphans(serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = serve(slots=1, data_dir=data)
    client = server.client()
    runs = tmp_path / "runs.txt"
    job = submit(client, "record", path=str(runs), seconds=30)
    wait_running(client, job["id"])
    tree = server.health()["processes"]
    others = [*tree["api"], tree["pool"], *tree["slots"]]

    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    # API workers notice their parent is gone, the pool does too and stops its slots,
    # and nothing keeps the data directory's lock.
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in others), 15,
               message="the master's children to exit")

    restarted = serve(slots=1, data_dir=data, env={"SCHOLARSOURCE_CANCEL_GRACE": "0.2"})
    client = restarted.client()
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] in {"queued", "running"}
    client.post(f"/api/jobs/{job['id']}/cancel")
    assert wait_finished(client, job["id"])["status"] == "cancelled"
