"""Artifacts through a real server: a task's files become its job's artifacts, listed in the
job JSON and downloaded with Range, ETag and Content-Disposition, scoped to the tenant; bad
names, links, directories and oversized files fail the attempt, and a failed attempt's files
are gone; a child reads its parent's files as ctx.parent_artifacts; the disk budget holds
jobs queued until retention frees room, and retention deletes the files with the job; a
200 MB file round-trips with the API worker's memory flat."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from scholarsource.config import Config, Retention
from scholarsource.prune import prune
from tests.e2e.jobs_api import submit, wait_finished
from tests.e2e.keyring import KEYS, as_key, make_key
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e
MiB = 1024**2


def attempt_dir(server: Any, job: dict[str, Any], attempt: int = 1) -> Path:
    return Path(server.data_dir) / "artifacts" / job["id"] / str(attempt)


def failed(client: httpx.Client, task: str, **params: Any) -> dict[str, Any]:
    job = wait_finished(client, submit(client, task, **params)["id"])
    assert job["status"] == "dead", job
    return job


@pytest.mark.both_backends
def test_files_become_artifacts_for_their_tenant_and_bad_ones_fail_the_attempt(serve) -> None:
    server = serve(env={**KEYS, "SCHOLARSOURCE_MAX_ARTIFACT_BYTES": "1000"})
    acme = as_key(server, make_key(server, "acme", "submit"))
    other = as_key(server, make_key(server, "globex", "admin"))

    names = ["résumé 1.pdf", "a.txt"]
    job = wait_finished(acme, submit(acme, "artifact_files", names=names)["id"])
    assert job["status"] == "succeeded", job
    url = f"/api/jobs/{job['id']}/artifacts/r%C3%A9sum%C3%A9%201.pdf"
    assert job["artifacts"] == [
        {"name": "a.txt", "size": 5, "sha256": hashlib.sha256(b"a.txt").hexdigest(),
         "content_type": "text/plain", "url": f"/api/jobs/{job['id']}/artifacts/a.txt"},
        {"name": "résumé 1.pdf", "size": 14,
         "sha256": hashlib.sha256("résumé 1.pdf".encode()).hexdigest(),
         "content_type": "application/pdf", "url": url}]
    # Lists leave artifacts out (one read per job would make a page cost a query per row).
    assert "artifacts" not in acme.get("/api/jobs").json()["jobs"][0]
    got = acme.get(url)
    assert got.status_code == 200 and got.content == "résumé 1.pdf".encode()
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"] == \
        "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%201.pdf"
    assert got.headers["etag"] == f'"{job["artifacts"][1]["sha256"]}"'
    assert acme.get(url, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
    # Another tenant (even an admin acting for its own tenant) gets what an unknown job gets.
    unknown = acme.get(f"/api/jobs/{'x' * 22}/artifacts/a.txt")
    theirs = other.get(url, params={"tenant": "globex"})
    assert (theirs.status_code, theirs.json()["error"]) == (404, "not_found") == \
        (unknown.status_code, unknown.json()["error"])
    missing = acme.get(f"/api/jobs/{job['id']}/artifacts/nope.txt")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    # A child reads its parent's files where they are (ctx.parent_artifacts).
    reader = acme.post("/api/jobs", json={"task": "read_parent_artifacts",
                                          "depends_on": [job["id"]]})
    assert reader.status_code == 202, reader.text
    read = wait_finished(acme, reader.json()["id"])
    assert read["result"] == {job["id"]: {name: name for name in names}}, read
    # A file this box cannot see (another box's, on storage that is not shared): a clear
    # 404, never a 500.
    (attempt_dir(server, job) / "a.txt").unlink()
    gone = acme.get(f"/api/jobs/{job['id']}/artifacts/a.txt")
    assert (gone.status_code, gone.json()["error"]) == (404, "artifact_unavailable")
    assert "artifacts_dir must be storage they all share" in gone.json()["message"]

    # Names that would leave the directory are refused in the task, with its ValueError.
    for bad in ("../escape", "/etc/passwd", "a/b"):
        dead = failed(acme, "artifact_files", names=[bad])
        assert dead["error_code"] == "task_error", dead
        assert dead["error"].startswith("ValueError: ") and "separator" in dead["error"]
    # A link, a directory or a fifo left beside the files fails the attempt, never followed.
    for odd in ("symlink", "directory", "fifo"):
        dead = failed(acme, "artifact_files", names=["kept.txt"], odd=odd)
        assert dead["error_code"] == "bad_artifact", dead
        assert "'odd' is a" in dead["error"] and "not a plain file" in dead["error"]
        assert not attempt_dir(server, dead).exists()
    # Over max_artifact_bytes; a task that raises after writing: the files go too.
    dead = failed(acme, "artifact_big", name="big.bin", mib=1)
    assert dead["error_code"] == "artifact_too_large", dead
    assert f"{MiB} bytes" in dead["error"] and "max_artifact_bytes (1000)" in dead["error"]
    assert not attempt_dir(server, dead).exists()
    dead = failed(acme, "artifact_files", names=["half.txt"], fail=True)
    assert dead["error_code"] == "task_error" and not attempt_dir(server, dead).exists()
    assert dead.get("artifacts") == []
    # A timeout kills the process: the pool deletes what the attempt wrote.
    held = server.data_dir / "held"
    answer = acme.post("/api/jobs", json={"task": "artifact_files", "timeout": 1, "params": {
        "names": ["partial.txt"], "hold": str(held)}})
    assert answer.status_code == 202, answer.text
    dead = wait_finished(acme, answer.json()["id"])
    assert held.exists() and dead["error_code"] == "timeout", dead
    wait_until(lambda: not attempt_dir(server, dead).exists(), 10,
               message="the timed-out attempt's files to be deleted")


@pytest.mark.both_backends
def test_a_child_reads_the_files_its_parent_wrote_as_artifacts(serve) -> None:
    client = serve().client()
    writer = submit(client, "artifact_files", names=["notes.txt", "data.csv"])
    plain = submit(client, "add")  # a parent without files: absent from parent_artifacts
    answer = client.post("/api/jobs", json={"task": "read_parent_artifacts",
                                            "depends_on": [writer["id"], plain["id"]]})
    assert answer.status_code == 202, answer.text
    child = wait_finished(client, answer.json()["id"])
    assert child["status"] == "succeeded", child
    assert child["result"] == {writer["id"]: {"notes.txt": "notes.txt", "data.csv": "data.csv"}}
    # A job without parents gets none.
    alone = wait_finished(client, submit(client, "read_parent_artifacts")["id"])
    assert (alone["status"], alone["result"]) == ("succeeded", {})


@pytest.mark.both_backends
def test_the_budget_holds_jobs_queued_until_retention_deletes_files(serve, tmp_path) -> None:
    server = serve(env={"SCHOLARSOURCE_ARTIFACTS_BUDGET_BYTES": "10"})
    client = server.client()
    first = wait_finished(client, submit(client, "artifact_files", names=["a.txt", "bb.txt"])["id"])
    assert [a["size"] for a in first["artifacts"]] == [5, 6]
    assert (attempt_dir(server, first) / "bb.txt").read_text() == "bb.txt"
    # 11 bytes of a 10-byte budget: the next job waits queued, and health says why.
    second = submit(client, "artifact_files", names=["c.txt"])
    admission = wait_until(lambda: server.health()["pool"]["admission"], 10,
                           message="the pool to report the spent budget")
    assert admission["waiting_for_artifact_space"] is True
    assert "artifacts_budget_bytes" in admission["reason"]
    assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "queued"
    # Retention deletes the first job, its rows and its files; the second job then runs.
    config = Config(data_dir=str(server.data_dir), database=server.database)
    wait_until(lambda: prune(config, Retention(succeeded=0.01)).counts.get("succeeded"), 10,
               message="the first job to be pruned")
    assert client.get(f"/api/jobs/{first['id']}").status_code == 404
    assert not attempt_dir(server, first).parent.exists()
    done = wait_finished(client, second["id"])
    assert done["status"] == "succeeded" and done["artifacts"][0]["name"] == "c.txt"


@pytest.mark.both_backends
def test_a_job_queued_behind_one_that_spends_the_budget_does_not_start_in_its_turn(
        serve) -> None:
    # One slot, both queued at once: the turn that records the first job's files would also
    # claim the second for the freed slot, with the budget read before those files.
    server = serve(slots=1, env={"SCHOLARSOURCE_ARTIFACTS_BUDGET_BYTES": "10"})
    client = server.client()
    created = client.post("/api/jobs/batch", json={"jobs": [
        {"task": "artifact_files", "params": {"names": ["a.txt", "bb.txt"]}},
        {"task": "artifact_files", "params": {"names": ["c.txt"]}}]})
    assert created.status_code == 202, created.text
    first, second = created.json()["jobs"]
    assert wait_finished(client, first["id"])["status"] == "succeeded"
    wait_until(lambda: server.health()["pool"]["admission"].get("waiting_for_artifact_space"),
               10, message="the pool to report the spent budget")
    assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "queued"


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, bytes."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines())
    return tuple(int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def test_a_200_mb_artifact_round_trips_with_flat_memory_and_ranges(serve) -> None:
    # SQLite only: the store holds one row for it, which the tests above run on both.
    server = serve(workers=1)
    client = server.client()
    job = wait_finished(client, submit(client, "artifact_big", name="big.bin", mib=200)["id"],
                        timeout=120)
    assert job["status"] == "succeeded", job
    [artifact] = job["artifacts"]
    assert (artifact["size"], artifact["sha256"]) == (200 * MiB, job["result"])
    assert artifact["content_type"] == "application/octet-stream"
    [api] = server.health()["processes"]["api"]
    assert client.get(artifact["url"], headers={"Range": "bytes=0-0"}).status_code == 206
    before, _ = rss(api)
    digest, peak = hashlib.sha256(), before
    with client.stream("GET", artifact["url"]) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(200 * MiB)
        assert answer.headers["etag"] == f'"{artifact["sha256"]}"'
        assert answer.headers["content-disposition"] == 'attachment; filename="big.bin"'
        for n, chunk in enumerate(answer.iter_bytes(MiB)):
            digest.update(chunk)
            if n % 8 == 0:
                peak = max(peak, rss(api)[0])
    assert digest.hexdigest() == artifact["sha256"]
    assert peak - before < 32 * MiB, f"the API worker grew by {(peak - before) / MiB:.0f} MiB"

    on_disk = attempt_dir(server, job) / "big.bin"
    with open(on_disk, "rb") as fh:
        fh.seek(123_456_789)
        expected = fh.read(1000)
        fh.seek(-10, 2)
        tail = fh.read()
    part = client.get(artifact["url"], headers={"Range": "bytes=123456789-123457788"})
    assert part.status_code == 206 and part.content == expected
    assert part.headers["content-range"] == f"bytes 123456789-123457788/{200 * MiB}"
    assert client.get(artifact["url"], headers={"Range": "bytes=-10"}).content == tail
    past = client.get(artifact["url"], headers={"Range": f"bytes={300 * MiB}-"})
    assert (past.status_code, past.json()["error"]) == (416, "range_not_satisfiable")
    assert past.headers["content-range"] == f"bytes */{200 * MiB}"
    bad = client.get(artifact["url"], headers={"Range": "bytes=x-y"})
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_range")


def test_what_a_killed_pools_attempt_left_is_swept_when_the_pool_comes_back(serve) -> None:
    # SQLite only: the sweep's one store call is in the contract suite on both stores.
    server = serve(env={"SCHOLARSOURCE_GRACE_PERIOD": "0"})
    client = server.client()
    held = server.data_dir / "held"
    job = submit(client, "artifact_files", names=["partial.txt"], hold=str(held))
    wait_until(held.exists, 10, message="the attempt to write its file")
    first = attempt_dir(server, job)
    assert (first / "partial.txt").read_text() == "partial.txt"
    os.kill(server.health()["pool"]["pid"], signal.SIGKILL)
    # The master starts a new pool: it re-queues the job (a crash) and deletes the files no
    # job keeps before it starts any; the job's next attempt writes its own.
    wait_until(lambda: (attempt_dir(server, job, 2) / "partial.txt").exists(), 30,
               message="the job's second attempt")
    assert not first.exists()
    assert client.get(f"/api/jobs/{job['id']}").json()["crashes"] == 1
