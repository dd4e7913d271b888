"""Periodic jobs through a real `scholarsource serve`: one job per fire time across a reload
and a kill -9, the schedules API, pauses that outlive a restart, a boot refused for a
schedule naming an unknown task, and schedules changed by a reload."""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import pytest

from scholarsource.exitcodes import EXIT_POOL_BOOT
from tests.conftest import Server
from tests.e2e.jobs_api import query
from tests.helpers import wait_until
from tests.test_cli import invoke

pytestmark = pytest.mark.e2e

EVERY_2S = '[[schedules]]\nname = "beat"\ntask = "noop"\nevery = "2s"\n'


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scholarsource.toml"
    path.write_text(text)
    return path


def fires(server: Server, name: str = "beat") -> dict[float, int]:
    """Jobs per fire time (scheduled_for) of `name`, from the database; manual triggers
    are no fires."""
    return dict(query(server, "SELECT scheduled_for, count(*) FROM jobs WHERE schedule = ? "
                              "AND NOT triggered GROUP BY 1", name))


def fired_after(server: Server, since: float, n: int) -> bool:
    return sum(1 for at in fires(server) if at > since) >= n


def test_every_2s_fires_once_per_fire_across_a_reload_and_a_kill(serve, tmp_path) -> None:
    args = ("--config", str(config_file(tmp_path, EVERY_2S)))
    server = serve(slots=1, args=args)
    start = time.time()
    wait_until(lambda: fired_after(server, start, 2), 15, message="two fires")
    server.signal(signal.SIGHUP)  # the pool is replaced mid-schedule
    wait_until(lambda: fired_after(server, start, 5), 20, message="five fires")
    end = time.time()
    # Over the window, one job per 2 s: each multiple of 2 in it, but perhaps the last one,
    # whose fire may not be committed yet (and perhaps one the reload's gap caught up).
    due = math.floor(end / 2) - math.floor(start / 2)
    window = [at for at in fires(server) if start < at <= end]
    assert due - 1 <= len(window) <= due, (due, sorted(window))

    server.kill_tree()  # kill -9 of every process, then a restart on the same data
    down = time.time()
    server = serve(slots=1, args=args, data_dir=server.data_dir)
    wait_until(lambda: fired_after(server, down, 2), 20,
               message="fires after the restart")
    counts = fires(server)
    assert set(counts.values()) == {1}, counts  # never two jobs for one fire
    assert all(at % 2 == 0 for at in counts)  # the fire times every pool computes


@pytest.mark.both_backends
def test_the_schedules_api_and_a_pause_that_outlives_a_restart(serve, tmp_path) -> None:
    args = ("--config", str(config_file(tmp_path, EVERY_2S)))
    server = serve(slots=1, args=args)
    client = server.client()
    wait_until(lambda: fires(server), 15, message="a first fire")

    (beat,) = client.get("/api/schedules").json()["schedules"]
    assert beat["name"] == "beat" and beat["every"] == 2.0 and not beat["paused"]
    assert beat["next_fire"] > time.time() - 1 and beat["next_fire"] % 2 == 0
    job = client.get(f"/api/jobs/{beat['last_job_id']}").json()
    assert job["schedule"] == "beat" and job["scheduled_for"] == beat["last_fire"]
    listed = client.get("/api/jobs", params={"schedule": "beat"}).json()["jobs"]
    assert listed and {j["schedule"] for j in listed} == {"beat"}
    assert client.get("/api/jobs", params={"schedule": "other"}).json()["jobs"] == []

    missing = client.post("/api/schedules/nope/trigger")
    assert missing.status_code == 404 and missing.json()["error"] == "schedule_not_found"
    triggered = client.post("/api/schedules/beat/trigger")
    assert triggered.status_code == 202 and triggered.json()["schedule"] == "beat"

    paused = client.post("/api/schedules/beat/pause").json()
    assert paused["paused"] and paused["next_fire"] is None
    before = fires(server)
    server.kill_tree()
    server = serve(slots=1, args=args, data_dir=server.data_dir)
    client = server.client()
    assert client.get("/api/schedules").json()["schedules"][0]["paused"]
    # A fire comes and goes (2 s), and no job is made for it. (A pause that did not hold
    # would have fired within the wait.)
    fire_due = math.floor(time.time() / 2) * 2 + 2
    wait_until(lambda: time.time() > fire_due + 1, 5, message="a fire time to pass")
    assert fires(server) == before

    resumed = client.post("/api/schedules/beat/resume").json()
    assert not resumed["paused"] and resumed["next_fire"] > time.time() - 1
    wait_until(lambda: len(fires(server)) > len(before), 15,
               message="a fire after the resume")


def test_a_schedule_naming_an_unknown_task_stops_the_boot(serve, tmp_path) -> None:
    path = config_file(tmp_path, '[[schedules]]\nname = "typo"\ntask = "nopp"\nevery = "5s"\n')
    server = serve(slots=1, args=("--config", str(path)), wait=False)
    assert server.proc.wait(timeout=60) == EXIT_POOL_BOOT
    assert "schedule 'typo': task: no task named 'nopp'" in server.log()


def test_a_reload_adds_and_removes_schedules(serve, tmp_path) -> None:
    path = config_file(tmp_path, EVERY_2S)
    server = serve(slots=1, args=("--config", str(path)))
    client = server.fresh_client()
    wait_until(lambda: fires(server), 15, message="a first fire")
    path.write_text(EVERY_2S.replace('"beat"', '"pulse"'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: fires(server, "pulse"), 20, message="the new schedule")
    names = [s["name"] for s in client.get("/api/schedules").json()["schedules"]]
    assert names == ["pulse"]
    # The removed schedule's jobs keep its name.
    assert client.get("/api/jobs", params={"schedule": "beat"}).json()["jobs"]


def test_the_schedules_command(serve, tmp_path) -> None:
    cron = '[[schedules]]\nname = "nightly"\ntask = "noop"\ncron = "30 2 * * *"\n'
    server = serve(slots=1, args=("--config", str(config_file(tmp_path, cron))))
    url = ("--url", server.url)
    listed = invoke("schedules", *url)
    assert listed.exit_code == 0 and listed.output.startswith("nightly ")
    assert "30 2 * * *" in listed.output and "next " in listed.output
    assert "paused" in invoke("schedules", "pause", "nightly", *url).output
    resumed = json.loads(invoke("schedules", "resume", "nightly", "--json", *url).output)
    assert resumed["paused"] is False
    job = json.loads(invoke("schedules", "trigger", "nightly", "--json", *url).output)
    assert job["schedule"] == "nightly"
    page = json.loads(invoke("jobs", "--schedule", "nightly", "--json", *url).output)
    assert [j["id"] for j in page["jobs"]] == [job["id"]]
    missing = invoke("schedules", "trigger", "nope", *url)
    assert missing.exit_code == 1 and "schedule_not_found" in missing.stderr
