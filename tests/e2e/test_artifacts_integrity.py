"""Artifacts stay what their job JSON says, through a real server: a settled file is
read-only and hashed to the size recorded even while a task's thread keeps writing; a file
that changed since is refused as JSON (409 artifact_changed), never served under its ETag;
downloads say `nosniff`; Range errors under If-Range are JSON too; and what no job keeps is
swept while the pool runs, not only when it starts."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.jobs_api import submit, wait_finished
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def artifacts_root(server: Any) -> Path:
    return Path(server.data_dir) / "artifacts"


@pytest.mark.both_backends
def test_a_download_is_the_recorded_file_or_a_json_refusal(serve) -> None:
    server = serve()
    client = server.client()
    job = wait_finished(client, submit(client, "artifact_files", names=["a.txt"])["id"])
    assert job["status"] == "succeeded", job
    [artifact] = job["artifacts"]
    on_disk = artifacts_root(server) / job["id"] / "1" / "a.txt"
    # Settled files are read-only: a stray writer that opens one again gets EACCES.
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o444

    got = client.get(artifact["url"])
    assert got.status_code == 200 and got.content == b"a.txt"
    assert got.headers["x-content-type-options"] == "nosniff"
    etag, modified = got.headers["etag"], got.headers["last-modified"]

    # Under an If-Range that holds (the ETag, or the date), a bad range is our JSON error,
    # as it is without If-Range; under one that does not hold, Range is ignored.
    for if_range in (etag, modified):
        bad = client.get(artifact["url"], headers={"If-Range": if_range, "Range": "bytes=x-y"})
        assert (bad.status_code, bad.json()["error"]) == (400, "bad_range"), bad.text
        past = client.get(artifact["url"], headers={"If-Range": if_range,
                                                    "Range": "bytes=100-"})
        assert (past.status_code, past.json()["error"]) == (416, "range_not_satisfiable")
        assert past.headers["content-range"] == "bytes */5"
        part = client.get(artifact["url"], headers={"If-Range": if_range, "Range": "bytes=1-2"})
        assert (part.status_code, part.content) == (206, b".t")
    stale = client.get(artifact["url"], headers={"If-Range": '"another"', "Range": "bytes=x-y"})
    assert (stale.status_code, stale.content) == (200, b"a.txt")

    # A task that keeps writing after its success: the job records the bytes it had when
    # it was settled, and the grown file is refused, never served under that ETag.
    first, more = "first part, ", "written after the success"
    job = wait_finished(client, submit(client, "artifact_keeps_writing", name="log.txt",
                                       first=first, more=more)["id"])
    assert job["status"] == "succeeded", job
    [artifact] = job["artifacts"]
    assert (artifact["size"], artifact["sha256"]) == \
        (len(first), hashlib.sha256(first.encode()).hexdigest())
    on_disk = artifacts_root(server) / job["id"] / "1" / "log.txt"
    wait_until(lambda: on_disk.read_text() == first + more, 10,
               message="the task's thread to append to its settled file")
    changed = client.get(artifact["url"])
    assert (changed.status_code, changed.json()["error"]) == (409, "artifact_changed")
    assert f"{len(first)} bytes" in changed.json()["message"]
    assert "etag" not in changed.headers


@pytest.mark.both_backends
def test_files_no_job_keeps_are_swept_while_the_pool_runs(serve) -> None:
    # A success whose write answer was lost leaves its files to the sweep: it must not wait
    # for the next restart.
    server = serve(env={"SCHOLARSOURCE_ARTIFACTS_SWEEP_INTERVAL": "0.5"})
    client = server.client()
    pool = server.health()["pool"]["pid"]
    kept = wait_finished(client, submit(client, "artifact_files", names=["kept.txt"])["id"])
    assert kept["status"] == "succeeded", kept
    root = artifacts_root(server)
    # An attempt the store does not list for its job, and a job the store does not have;
    # their files read-only, as a settled attempt leaves them.
    strays = [root / kept["id"] / "2", root / ("x" * 22) / "1"]
    for directory in strays:
        directory.mkdir(parents=True)
        (directory / "lost.txt").write_text("a success whose answer was lost")
        os.chmod(directory / "lost.txt", 0o444)
    wait_until(lambda: not any(d.exists() for d in strays), 15,
               message="the periodic sweep to delete the strays")
    assert not (root / ("x" * 22)).exists()
    assert server.health()["pool"]["pid"] == pool  # no restart
    got = client.get(kept["artifacts"][0]["url"])
    assert (got.status_code, got.content) == (200, b"kept.txt")
