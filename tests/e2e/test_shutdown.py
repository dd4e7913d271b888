"""Stopping, whoever sends the signal: the master alone (systemd's KillMode=mixed) or the
whole process group (KillMode=control-group, supervisord's stopasgroup, Ctrl-C in a terminal).

Running jobs get `grace_period` on SIGTERM and are re-queued at once on SIGINT or SIGQUIT;
either way an interrupted attempt is never charged, and a clean stop logs no error.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import stored, submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

# Lines a clean stop must not log (uvicorn's logger is named "uvicorn.error": match levels).
_ALARMS = ("[ERROR]", "[CRITICAL]", "Traceback", "Error while closing socket", "was sent SIG")


def _booted(server: Server, workers: int) -> None:
    """Wait until every API worker has installed its signal handlers: a worker still booting
    dies of any signal, as Gunicorn's own workers do."""
    wait_until(lambda: server.log().count("Application startup complete") >= workers, 20,
               message="the API workers to boot")


def _send(server: Server, sig: signal.Signals, target: str) -> None:
    if target == "group":
        os.killpg(server.proc.pid, sig)  # kill -SIG -- -PGID
    else:
        server.signal(sig)


def _job(server: Server, job_id: str) -> dict[str, Any]:
    job = stored(server, job_id, "status", "failures", "crashes", "history")
    history = job["history"]  # JSON text in SQLite, jsonb (decoded) in PostgreSQL
    return {**job, "history": json.loads(history) if isinstance(history, str) else history}


def _assert_requeued_uncharged(job: dict[str, Any]) -> None:
    assert job["status"] == "queued"
    assert (job["failures"], job["crashes"]) == (0, 0)
    assert [a["outcome"] for a in job["history"]] == ["interrupted"]


def _assert_clean(server: Server) -> None:
    log = server.log()
    assert not [line for line in log.splitlines() if any(a in line for a in _ALARMS)], log


@pytest.mark.parametrize("target", ["group", "master"])
def test_sigterm_lets_a_short_job_finish_and_requeues_a_long_one_uncharged(
        serve, tmp_path: Path, target: str) -> None:
    server = serve(slots=2, env={"SCHOLARSOURCE_GRACE_PERIOD": "3"})
    _booted(server, 2)
    client = server.client()
    runs = tmp_path / "runs.txt"
    short = submit(client, "mark", path=str(runs), seconds=1.0)
    long = submit(client, "sleep", seconds=60)
    wait_running(client, short["id"])
    wait_running(client, long["id"])

    _send(server, signal.SIGTERM, target)
    assert server.proc.wait(timeout=30) == 0

    done = _job(server, short["id"])
    assert (done["status"], done["failures"], done["crashes"]) == ("succeeded", 0, 0)
    _assert_requeued_uncharged(_job(server, long["id"]))
    assert "pool stopping: 2 running job(s), 3s grace" in server.log()
    assert not (server.data_dir / "pool.handback").exists()  # all written back
    _assert_clean(server)


@pytest.mark.parametrize(("sig", "target"), [
    (signal.SIGINT, "group"), (signal.SIGINT, "master"),
    (signal.SIGQUIT, "group"), (signal.SIGQUIT, "master")])
def test_a_quick_stop_requeues_running_jobs_uncharged_and_exits_promptly(
        serve, sig: signal.Signals, target: str) -> None:
    # A grace far longer than the wait below: a worker that ignores the quick stop would
    # hold the master for the whole graceful timeout (grace + 5 s) before being killed.
    server = serve(slots=1, env={"SCHOLARSOURCE_GRACE_PERIOD": "60"})
    _booted(server, 2)
    client = server.client()
    job = submit(client, "sleep", seconds=60)
    wait_running(client, job["id"])

    _send(server, sig, target)
    assert server.proc.wait(timeout=20) == 0

    _assert_requeued_uncharged(_job(server, job["id"]))
    _assert_clean(server)


def test_a_job_timeout_still_stops_its_process_with_sigterm(serve) -> None:
    # Slots ignore a SIGTERM their pool did not send; the pool's own, for a timeout, counts.
    server = serve(slots=1, env={"SCHOLARSOURCE_KILL_GRACE": "60"})
    client = server.client()
    response = client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 60},
                                              "timeout": 0.5})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        return job if job["attempts_history"] else None

    job = wait_until(ended, 20, message="the attempt to time out")
    assert job["attempts_history"][0]["error_code"] == "timeout"


def test_a_hup_to_the_group_reloads_and_the_running_job_finishes(serve) -> None:
    server = serve(slots=1)
    _booted(server, 2)
    client = server.fresh_client()
    job = submit(client, "sleep", seconds=1.0)
    wait_running(client, job["id"])
    pool = server.health()["processes"]["pool"]

    _send(server, signal.SIGHUP, "group")
    wait_until(lambda: server.health()["processes"]["pool"] not in (None, pool), 30,
               message="the reloaded pool")
    done = client.get(f"/api/jobs/{job['id']}").json()
    assert (done["status"], done["failures"], done["crashes"]) == ("succeeded", 0, 0)
    assert server.proc.poll() is None
    _assert_clean(server)


@pytest.mark.both_backends
def test_a_job_process_that_dies_while_the_pool_stops_is_interrupted_not_crashed(
        serve, tmp_path: Path) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_GRACE_PERIOD": "60"})
    client = server.client()
    pidfile = tmp_path / "slot.pid"
    job = submit(client, "hold", pidfile=str(pidfile), seconds=60)
    wait_running(client, job["id"])
    slot = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), 10,
                          message="the slot's pid"))

    server.signal(signal.SIGTERM)
    wait_until(lambda: "pool stopping: 1 running job(s)" in server.log(), 10,
               message="the pool to start stopping")
    os.kill(slot, signal.SIGKILL)
    assert server.proc.wait(timeout=30) == 0  # nothing left to wait for: no 60 s grace

    _assert_requeued_uncharged(_job(server, job["id"]))
    assert "its process ended while the pool was stopping (killed by SIGKILL)" in server.log()


@pytest.mark.parametrize("holder", ["before_the_stop", "during_the_grace",
                                    "while_the_pool_waits"])
def test_a_stop_that_cannot_write_its_requeue_charges_no_crash(
        serve, tmp_path: Path, holder: str) -> None:
    # Another process holds SQLite's write lock (a `prune --vacuum`, a migration) across the
    # stop. Held from before the SIGTERM, the pool's requeue is refused after busy_timeout
    # and the pool exits without it; taken once the pool is stopping, with a busy_timeout
    # past the master's margin, the pool waits on a write until the master kills it; held
    # long enough before the stop that the pool already waits on a write (its heartbeat) as
    # the TERM comes, with that busy_timeout, the loop never gets to run the stop before the
    # kill (the signal's handler lists the attempt all the same).
    # Every way the next start must put the job back uncharged, not as a pool death.
    busy = "0.5" if holder == "before_the_stop" else "30"
    env = {"SCHOLARSOURCE_GRACE_PERIOD": "1", "SCHOLARSOURCE_BUSY_TIMEOUT": busy}
    server = serve(slots=1, env=env)
    _booted(server, 2)
    client = server.client()
    gate = tmp_path / "gate"  # the job waits for it: the first attempt outlives the grace
    job = submit(client, "narrate", gate=str(gate), lines=0)
    wait_running(client, job["id"])

    lock = sqlite3.connect(server.data_dir / "scholarsource.db", isolation_level=None)
    if holder != "during_the_grace":
        lock.execute("BEGIN IMMEDIATE")
    if holder == "while_the_pool_waits":
        time.sleep(1.5)  # the heartbeat, every second, now waits on the lock
    server.signal(signal.SIGTERM)
    handback = server.data_dir / "pool.handback"
    wait_until(handback.exists, 10, message="the pool to list what it hands back")
    if holder == "during_the_grace":
        lock.execute("BEGIN IMMEDIATE")
    server.proc.wait(timeout=30)
    lock.execute("ROLLBACK")
    lock.close()
    if holder == "before_the_stop":  # it gave up on the write, and said so
        assert "the next start re-queues them uncharged (pool.handback)" in server.log()
    else:  # the master killed it while it waited
        assert "pool stopped" not in server.log()
    # Waiting on the lock since before the TERM, the pool never got to run its stop.
    stopping = "pool stopping: 1 running job(s)" in server.log()
    assert stopping is (holder != "while_the_pool_waits")
    assert handback.exists()

    gate.touch()
    again = serve(slots=1, env=env)
    done = wait_finished(again.client(), job["id"])
    assert (done["status"], done["failures"], done["crashes"]) == ("succeeded", 0, 0)
    outcomes = [(a["outcome"], a["error_code"]) for a in done["attempts_history"]]
    assert outcomes == [("interrupted", "interrupted"), ("succeeded", None)]
    assert not handback.exists()  # applied, then removed


def test_a_truncated_handback_file_is_ignored_with_one_warning(serve, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "pool.handback").write_text('[["0VcxSSqGNUXLZrRKAOyEXMFA5Htgcg", 4')
    server = serve(slots=1, data_dir=data)
    done = wait_finished(server.client(), submit(server.client(), "echo", value=1)["id"])
    assert done["status"] == "succeeded"
    assert server.log().count("ignoring pool.handback") == 1
    assert not (data / "pool.handback").exists()


@pytest.mark.both_backends
def test_a_pool_killed_in_its_grace_hands_back_what_still_ran_and_not_what_finished(
        serve, tmp_path: Path) -> None:
    # The list is written as the stop begins, with both attempts; one finishes in the grace
    # (its result written), then the pool is killed. The next start re-queues the other
    # uncharged and leaves the finished one alone (its token no longer runs).
    env = {"SCHOLARSOURCE_GRACE_PERIOD": "60"}
    server = serve(slots=2, env=env)
    _booted(server, 2)
    client = server.client()
    gate = tmp_path / "gate"
    long = submit(client, "narrate", gate=str(gate), lines=0)
    short = submit(client, "sleep", seconds=1.0)
    wait_running(client, long["id"])
    wait_running(client, short["id"])
    pool = server.health()["processes"]["pool"]
    server.signal(signal.SIGTERM)
    wait_until(lambda: "pool stopping: 2 running job(s)" in server.log(), 10,
               message="the pool to start stopping")
    handback = server.data_dir / "pool.handback"
    assert len(json.loads(handback.read_text())) == 2
    wait_until(lambda: _job(server, short["id"])["status"] == "succeeded", 10,
               message="the short job to finish in the grace")
    os.kill(pool, signal.SIGKILL)
    server.proc.wait(timeout=30)
    gate.touch()
    again = serve(slots=2, env=env)
    done = wait_finished(again.client(), long["id"])
    assert (done["status"], done["failures"], done["crashes"]) == ("succeeded", 0, 0)
    finished = _job(again, short["id"])
    assert (finished["status"], len(finished["history"])) == ("succeeded", 1)
    assert not handback.exists()
