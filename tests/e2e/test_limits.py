"""Limits end one job and touch no other: hard timeouts (TERM, then KILL), memory caps, hard
cancel, poison jobs; RAM-aware admission; a full disk."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

MB = 1024**2


def post(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def test_timeout_memory_cap_and_cancel_end_their_job_only(serve, tmp_path: Path) -> None:
    server = serve(slots=4, env={"SCHOLARSOURCE_KILL_GRACE": "0.5",
                                 "SCHOLARSOURCE_CANCEL_GRACE": "0.5"})
    client = server.client()
    neighbour = submit(client, "mark", path=str(tmp_path / "n.log"), seconds=3)
    deaf = post(client, task="stubborn", timeout=0.5, params={"seconds": 30})
    hog = post(client, task="memory", memory_limit="150MB", params={"mb": 400, "seconds": 20})
    assert hog["memory_limit"] == 150 * 1000**2
    ignores_cancel = post(client, task="stubborn", params={"seconds": 30})

    timed_out = wait_finished(client, deaf["id"])
    assert (timed_out["status"], timed_out["error_code"]) == ("dead", "timeout")
    # It ignored SIGTERM, so only the SIGKILL after kill_grace ended it.
    assert timed_out["finished_at"] - timed_out["started_at"] >= 0.5 + 0.5

    capped = wait_finished(client, hog["id"])
    assert (capped["status"], capped["error_code"]) == ("dead", "memory_limit")
    assert capped["error"].startswith("memory_limit: its processes used ")
    assert capped["peak_rss"] > 150 * 1000**2

    wait_running(client, ignores_cancel["id"])
    assert client.post(f"/api/jobs/{ignores_cancel['id']}/cancel").status_code == 202
    assert client.post(f"/api/jobs/{ignores_cancel['id']}/cancel").status_code == 202
    cancelled = wait_finished(client, ignores_cancel["id"])
    assert (cancelled["status"], cancelled["error_code"]) == ("cancelled", "cancelled")
    again = client.post(f"/api/jobs/{ignores_cancel['id']}/cancel")  # harmless
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")

    done = wait_finished(client, neighbour["id"])
    assert (done["status"], done["result"], done["attempts"]) == ("succeeded", 1, 1)
    late = client.post(f"/api/jobs/{neighbour['id']}/cancel")
    assert (late.status_code, late.json()["error"], late.json()["status"]) == (
        409, "already_finished", "succeeded")


def test_a_poison_job_is_dead_after_exactly_its_attempts_each_noticed_at_once(
        serve, tmp_path: Path) -> None:
    client = serve(slots=1, env={"SCHOLARSOURCE_MAX_CRASHES": "10",
                                 "SCHOLARSOURCE_BACKOFF_BASE": "0.05"}).client()
    crashes = tmp_path / "crashes.log"
    job = post(client, task="poison", max_attempts=3, params={"path": str(crashes)})
    dead = wait_finished(client, job["id"])
    assert (dead["status"], dead["attempts"], dead["failures"], dead["crashes"]) == (
        "dead", 3, 3, 3)
    assert dead["error_code"] == "worker_died" and "exit code 1" in dead["error"]
    crashed_at = [float(line) for line in crashes.read_text().split()]
    assert len(crashed_at) == 3
    for when, attempt in zip(crashed_at, dead["attempts_history"], strict=True):
        assert attempt["outcome"] == "crashed" and attempt["exit"] == "exit code 1"
        # The pool owns the process: the death ends the attempt at once, not at a lease.
        assert 0 <= attempt["ended_at"] - when < 1.0, (attempt, when)
    # The pool survived its poison job.
    assert wait_finished(client, submit(client, "noop")["id"])["status"] == "succeeded"


def test_admission_runs_only_as_many_big_jobs_as_memory_allows(serve) -> None:
    # Leave room for two jobs expected to need 900 MB each above the reserve, not three. They
    # take 100 MB (and an interpreter), so what keeps the third out is what the two running
    # are still expected to grow into (~1.5 GB), not how far free memory fell: on a VM free
    # memory was seen to fall 55-190 MB for 300 MB touched, and to rise by hundreds of MB as
    # other tests' servers exit. The ~500 MB of headroom keeps the test about admission, not
    # kernel counters.
    reserve = psutil.virtual_memory().available - 1900 * MB
    server = serve(slots=4, env={"SCHOLARSOURCE_MEMORY_RESERVE": str(reserve),
                                 "SCHOLARSOURCE_MEMORY_PER_JOB": str(900 * MB)})
    client = server.client()
    jobs = [post(client, task="memory", params={"mb": 100, "seconds": 1.5}) for _ in range(4)]
    wait_until(lambda: server.health()["pool"].get("admission", {}).get("waiting_for_memory"),
               message="the pool to say jobs wait for memory")
    ended = [wait_finished(client, job["id"], timeout=60) for job in jobs]
    assert [job["status"] for job in ended] == ["succeeded"] * 4
    # finished_at is when the pool committed the result, a flush after the slot was free:
    # under load a job can look as if it overlapped the next one by that much. A third job
    # of 1.5 s run beside two others would overlap them by far more than 0.2 s.
    spans = sorted((job["started_at"], job["finished_at"] - 0.2) for job in ended)
    at_once = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert at_once <= 2, spans


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write until the disk is full; returns the filler file."""
    filler = directory / "filler"
    # Unbuffered: a buffered file would try to flush once more when closed, and fail there.
    with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
    return filler


def respawn_one_api_worker(server: Any) -> None:
    """TERM one API worker (a clean exit) and wait for Gunicorn's replacement to serve."""
    workers = server.health()["processes"]["api"]
    psutil.Process(workers[0]).terminate()

    def serving() -> list[int] | None:
        try:
            return list(server.health()["processes"]["api"])
        except httpx.TransportError:  # the request reached the worker as it stopped
            return None

    wait_until(lambda: (now := serving()) and workers[0] not in now
               and len(now) == len(workers), 30, message="a new API worker")


def answer_new_labels(url: str) -> None:
    """Requests that each worker counts under labels it has not seen yet; one connection
    per request, so that both workers take some."""
    requests = [("GET", "/api/no-such-route", None), ("DELETE", "/api/health", None),
                ("POST", "/api/jobs", b"{not json"), ("PUT", "/api/jobs", None),
                ("GET", "/api/jobs/nope", None), ("POST", "/api/submit", b"[]")]
    for _ in range(4):
        for method, path, body in requests:
            answer = httpx.request(method, url + path, content=body, timeout=10,
                                   headers={"content-type": "application/json"})
            assert 400 <= answer.status_code < 600 and answer.json()["error"], answer.text


def test_a_full_disk_answers_503_corrupts_nothing_and_recovers(serve, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "24m") as disk:
        server = serve(slots=1, data_dir=disk / "data")
        client = server.client()
        before = [submit(client, "echo", n=i)["id"] for i in range(20)]
        for job_id in before:
            wait_finished(client, job_id)
        filler = fill(disk)
        answers = [client.post("/api/jobs", json={"task": "echo", "params": {"pad": "x" * 4000}})
                   for _ in range(300)]
        codes = {answer.status_code for answer in answers}
        assert 503 in codes and codes <= {202, 503}, codes
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["retry-after"] and refused.json()["error"] == "unavailable"
        accepted = [a.json()["id"] for a in answers if a.status_code == 202]
        assert client.get(f"/api/jobs/{before[0]}").status_code == 200  # reads still work
        # A new API worker, and new label values in every worker, while the disk stays full:
        # each writes metrics into fresh pages of memory-mapped files, which killed the
        # workers with SIGBUS for as long as those files lived on the data disk.
        for _ in range(2):
            respawn_one_api_worker(server)
            answer_new_labels(server.url)
        # The two workers this test stopped with SIGTERM exit 0 and log no death; a SIGBUS
        # shows as "was sent SIGBUS!" and any other crash as "exited with code".
        deaths = [line for line in server.log().splitlines()
                  if " was sent " in line or "exited with code" in line]
        assert deaths == [], server.log()

        filler.unlink()
        after = wait_until(lambda: (r := client.post("/api/jobs", json={"task": "noop"}))
                           .status_code == 202 and r.json(), 30, message="writes to work again")
        for job_id in [*before, *accepted, after["id"]]:
            assert wait_finished(client, job_id, timeout=30)["status"] == "succeeded"
        server.stop()
        db = sqlite3.connect(disk / "data" / "scholarsource.db")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == \
                len(before) + len(accepted) + 1
        finally:
            db.close()
