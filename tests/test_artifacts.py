"""Artifact names, the check of an attempt's files (hashed to the size recorded, made
read-only, still deletable), the sweep's choice of strays, the download's open of the file
(no link, no second open by name), and ctx's side: what `ctx.artifact` gives a task and
what `ctx.parent_artifacts` holds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from scholarsource import artifacts
from scholarsource.api.artifacts import _open, respond
from scholarsource.config import Config
from scholarsource.errors import ConfigError, NotFound
from scholarsource.pool.artifacts import received, settle, well_formed
from scholarsource.pool.messages import Ended
from scholarsource.store.base import Artifact, Claim, ErrorCode
from scholarsource.tasks.context import Context


@pytest.mark.parametrize("name", [
    "", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "nul\0byte", "new\nline", "tab\t",
    "del\x7f", "é" * 128, "lone \ud800 surrogate", 7])
def test_names_that_could_leave_the_directory_or_break_a_header_are_refused(name: object
                                                                            ) -> None:
    with pytest.raises(ValueError):
        artifacts.check_name(name)


@pytest.mark.parametrize("name", ["a.txt", "résumé 1.pdf", ".hidden", "x" * 255, "é" * 127,
                                  "<img src=x>.png", "..."])
def test_plain_file_names_are_accepted(name: str) -> None:
    assert artifacts.check_name(name) == name


def test_collect_hashes_plain_files_by_name_and_checks_the_total_first(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "a.json").write_text("{}")
    produced = artifacts.collect(tmp_path, 1002)
    assert produced == [
        artifacts.Produced("a.json", 2, hashlib.sha256(b"{}").hexdigest(), "application/json"),
        artifacts.Produced("b.bin", 1000, hashlib.sha256(b"\0" * 1000).hexdigest(),
                           "application/octet-stream")]
    with pytest.raises(artifacts.ArtifactTooLarge, match="1002 bytes"):
        artifacts.collect(tmp_path, 1001)
    assert artifacts.collect(tmp_path / "none", 0) == []  # the task wrote nothing


@pytest.mark.parametrize("make, kind", [
    (lambda p: os.symlink("/etc/passwd", p), "a symbolic link"),
    (lambda p: os.symlink(".", p), "a symbolic link"),
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: os.mkfifo(p), "a special file")])
def test_anything_but_a_plain_file_is_refused_and_never_followed(tmp_path: Path, make,
                                                                 kind: str) -> None:
    (tmp_path / "ok.txt").write_text("ok")
    make(tmp_path / "odd")
    with pytest.raises(artifacts.ArtifactRefused, match=f"'odd' is {kind}, not a plain file"):
        artifacts.collect(tmp_path, 10**9)


def test_settle_keeps_a_successes_files_and_deletes_any_other_ends(tmp_path: Path) -> None:
    directory = artifacts.attempt_dir(tmp_path, "job", 1)
    directory.mkdir(parents=True)
    (directory / "r.txt").write_text("r")
    ok = settle(Ended(7, None, "null"), directory, 10)
    assert ok.artifacts == (("r.txt", 1, hashlib.sha256(b"r").hexdigest(), "text/plain"),)
    assert directory.exists() and well_formed(ok.artifacts)
    too_big = settle(Ended(7, None, "null"), directory, 0)
    assert too_big.code is ErrorCode.ARTIFACT_TOO_LARGE and too_big.artifacts == ()
    assert not directory.exists() and not directory.parent.exists()
    directory.mkdir(parents=True)
    failed = Ended(7, ErrorCode.TASK_ERROR, "boom")
    assert settle(failed, directory, 10) is failed and not directory.exists()


def test_the_pool_believes_only_well_formed_artifacts_from_a_slot() -> None:
    good = (("a.txt", 1, "ab", "text/plain"),)
    assert well_formed(()) and well_formed(good)
    for bad in ([("a.txt", 1, "ab", "text/plain")], (("../a", 1, "ab", "x"),),
                (("a", "1", "ab", "x"),), (("a", 1, "ab"),), (("a", True, "ab", "x"),), None):
        assert not well_formed(bad), bad
    claim = Claim("job", "t", "{}", 2, 3, None, 9)
    assert received(claim, good) == (Artifact("a.txt", 1, "ab", "text/plain", "job/2/a.txt"),)


def test_strays_are_the_listed_attempts_no_job_keeps(tmp_path: Path) -> None:
    for job, attempt in (("kept", "1"), ("kept", "2"), ("gone", "1"), ("kept", "junk")):
        (tmp_path / job / attempt).mkdir(parents=True)
    listed = artifacts.listing(tmp_path)
    (tmp_path / "late" / "1").mkdir(parents=True)  # made after the listing: not judged
    strays = artifacts.strays(tmp_path, listed, {"kept": {2}})
    assert sorted(strays) == sorted([tmp_path / "kept" / "1", tmp_path / "kept" / "junk",
                                     tmp_path / "gone" / "1"])


def test_ctx_artifact_makes_its_attempts_directory_once_and_clears_a_stale_one(
        tmp_path: Path) -> None:
    stale = artifacts.attempt_dir(tmp_path, "job", 3)
    stale.mkdir(parents=True)
    (stale / "old.txt").write_text("an earlier run's")
    ctx = Context("job", 3, 1, None, None, tmp_path)
    assert ctx.artifacts_dir is None
    path = ctx.artifact("new.txt")
    assert path == stale / "new.txt" and ctx.artifacts_dir == stale
    assert not (stale / "old.txt").exists()
    path.write_text("x")
    assert ctx.artifact("more.txt").parent == stale and (stale / "new.txt").exists()
    with pytest.raises(ValueError, match="separator"):
        ctx.artifact("../../escape")
    with pytest.raises(RuntimeError):
        Context("job", 1, 1, None, None).artifact("a.txt")


def test_parent_artifacts_are_the_stores_answer_as_paths(tmp_path: Path) -> None:
    # What a child's ctx.parent_artifacts holds: Store.artifacts_of(parents), as files.
    found = {"p1": [Artifact("a.csv", 3, "ab", "text/csv", "p1/2/a.csv")]}
    paths = artifacts.paths(tmp_path, found)
    assert paths == {"p1": {"a.csv": tmp_path / "p1" / "2" / "a.csv"}}
    assert Context("c", 1, 1, None, None, tmp_path, paths).parent_artifacts == paths
    assert Context("c", 1, 1, None, None).parent_artifacts == {}


def test_names_refuse_c1_and_format_characters() -> None:
    for name in ("evil\u202etxt.exe", "a\x85b", "zero\u200bwidth"):
        with pytest.raises(ValueError, match="control characters"):
            artifacts.check_name(name)


def read_all(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def test_the_download_serves_only_its_own_jobs_file_and_follows_no_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "artifacts", tmp_path / "outside"
    (root / "J" / "1").mkdir(parents=True)
    (root / "J" / "1" / "a.txt").write_text("mine")
    (root / "K" / "1").mkdir(parents=True)
    (root / "K" / "1" / "a.txt").write_text("theirs")
    outside.mkdir()
    (outside / "a.txt").write_text("secret")

    def art(path: str) -> Artifact:
        return Artifact("a.txt", 4, "0" * 64, "text/plain", path)

    assert read_all(_open(root, "J", art("J/1/a.txt"))) == b"mine"
    (root / "J" / "2").symlink_to(outside)  # a directory swapped for a link
    (root / "J" / "3").mkdir()
    (root / "J" / "3" / "a.txt").symlink_to(outside / "a.txt")  # the file itself a link
    (root / "J" / "4").mkdir()
    os.mkfifo(root / "J" / "4" / "a.txt")  # never blocks the open
    (root / "J" / "5" / "a.txt").mkdir(parents=True)
    for path in ("K/1/a.txt", "J/2/a.txt", "J/3/a.txt", "J/4/a.txt", "J/5/a.txt", "J/x/a.txt",
                 "J/1/../1/a.txt", "J/1/b.txt"):
        with pytest.raises(NotFound):
            _open(root, "J", art(path))
    # The artifacts directory itself may be a link (an operator's choice).
    (tmp_path / "linked").symlink_to(root)
    assert read_all(_open(tmp_path / "linked", "J", art("J/1/a.txt"))) == b"mine"


def test_the_download_streams_the_file_it_checked_even_if_its_name_is_swapped(
        tmp_path: Path) -> None:
    # The window between the checks and the streaming: FileResponse opened the path again
    # by name, so a file replaced by a link meanwhile was followed and served.
    root = tmp_path / "artifacts"
    (root / "J" / "1").mkdir(parents=True)
    path = root / "J" / "1" / "a.txt"
    path.write_bytes(b"mine" * 1000)
    (tmp_path / "secret").write_bytes(b"secret" * 1000)
    artifact = Artifact("a.txt", 4000, hashlib.sha256(b"mine" * 1000).hexdigest(),
                        "text/plain", "J/1/a.txt")

    def swap_after_checks(request: Request) -> Response:
        response = respond(request, root, "J", artifact)
        (tmp_path / "link").symlink_to(tmp_path / "secret")
        os.replace(tmp_path / "link", path)
        return response

    async def body() -> None:
        transport = httpx.ASGITransport(app=Starlette(routes=[Route("/f", swap_after_checks)]))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            whole = await client.get("/f")
            assert whole.status_code == 200 and whole.content == b"mine" * 1000
            assert whole.headers["x-content-type-options"] == "nosniff"
            path.unlink()
            path.write_bytes(b"mine" * 1000)
            head = await client.head("/f")  # headers alone: the descriptor is closed too
            assert (head.status_code, head.headers["content-length"]) == (200, "4000")
            # The name is a link now: a fresh download refuses it.
            with pytest.raises(NotFound):
                await client.get("/f")
            path.unlink()
            path.write_bytes(b"mine" * 1000)
            part = await client.get("/f", headers={"Range": "bytes=2-5, 10-11"})
            assert part.status_code == 206 and b"secret" not in part.content
            assert b"\r\n\r\nnemi\r\n" in part.content
            assert b"\r\n\r\nne\r\n" in part.content

    open_before = len(os.listdir("/proc/self/fd"))
    asyncio.run(body())
    # Each response closed the descriptor it was given.
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_settle_hashes_exactly_the_size_it_records_and_makes_the_files_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A task's thread that keeps writing: it appends 500 bytes just after each look at the
    # file, the last of them the one that reads the size.
    (tmp_path / "out.bin").write_bytes(b"x" * 3000)
    real_fstat = os.fstat
    sizes: list[int] = []

    def fstat_then_append(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        sizes.append(info.st_size)
        with open(tmp_path / "out.bin", "ab") as writer:  # root: the mode does not stop it
            writer.write(b"y" * 500)
        return info

    monkeypatch.setattr(os, "fstat", fstat_then_append)
    [produced] = artifacts.collect(tmp_path, 10**6)
    monkeypatch.undo()
    whole = (tmp_path / "out.bin").read_bytes()
    assert produced.size == sizes[-1] < len(whole)  # what grew after it is not described
    assert produced.sha256 == hashlib.sha256(whole[:produced.size]).hexdigest()
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == artifacts.READ_ONLY


def test_a_file_that_grows_past_the_limit_while_it_is_settled_is_too_large(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out.bin").write_bytes(b"x" * 100)
    real_fchmod = os.fchmod

    def fchmod_after_growth(fd: int, mode: int) -> None:
        with open(tmp_path / "out.bin", "ab") as writer:
            writer.write(b"y" * 100)
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", fchmod_after_growth)
    with pytest.raises(artifacts.ArtifactTooLarge, match="200 bytes"):
        artifacts.collect(tmp_path, 150)


NOBODY = 65534


def as_nobody(tmp_path: Path, action: str) -> int:
    """Run `action` (statements over the attempt directory `attempt`) in a child process
    as a user that is not root, whom file modes bind; its exit code. The child starts in
    `tmp_path` (pytest's parents of it are root's alone, mode 0700)."""
    code = f"""
import os, shutil, sys
from pathlib import Path
from scholarsource import artifacts
os.chdir({str(tmp_path)!r})
if os.geteuid() == 0:
    os.setgid({NOBODY})
    os.setuid({NOBODY})
attempt = Path("job", "1")
{action}
"""
    return subprocess.run([sys.executable, "-c", code], timeout=30).returncode


def owned_by_nobody(tmp_path: Path, *names: str) -> Path:
    """The attempt directory job/1 under `tmp_path` with these files, all owned by the
    child's user (the slot and the API run as the user that owns the artifacts)."""
    directory = artifacts.attempt_dir(tmp_path, "job", 1)
    directory.mkdir(parents=True)
    for name in names:
        (directory / name).write_text(name)
    if os.geteuid() == 0:
        for path in (tmp_path, tmp_path / "job", directory,
                     *(directory / name for name in names)):
            os.chown(path, NOBODY, NOBODY)
    return directory


def test_settled_files_refuse_a_writer_and_are_still_deleted(tmp_path: Path) -> None:
    # Tests run as root, whom modes do not stop: the child runs as nobody.
    directory = owned_by_nobody(tmp_path, "a.txt")
    assert as_nobody(tmp_path, "artifacts.collect(attempt, 10)") == 0
    assert stat.S_IMODE((directory / "a.txt").stat().st_mode) == artifacts.READ_ONLY
    # A stray writer that opens the settled file again gets EACCES.
    assert as_nobody(tmp_path, """
try:
    open(attempt / "a.txt", "a")
except PermissionError:
    sys.exit(0)
sys.exit(1)""") == 0
    # Deleting a file needs write on its directory, not on the file: discard (a failed
    # attempt, the sweep) and retention's rmtree of the job's directory still delete them.
    assert as_nobody(tmp_path, "artifacts.discard(attempt)") == 0
    assert not (tmp_path / "job").exists()
    owned_by_nobody(tmp_path, "b.txt")
    assert as_nobody(tmp_path, """
artifacts.collect(attempt, 10)
assert not os.access(attempt / "b.txt", os.W_OK)
shutil.rmtree("job")""") == 0
    assert not (tmp_path / "job").exists()


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_the_sweep_interval_is_a_positive_number_of_seconds(value: float) -> None:
    with pytest.raises(ConfigError, match="artifacts_sweep_interval"):
        Config(artifacts_sweep_interval=value)


def _big_artifact(tmp_path: Path) -> tuple[Path, Path, bytes, Artifact]:
    """An artifacts root holding job J's 3 MiB file (over three of the download's chunks):
    the root, the file, its bytes and its record."""
    root = tmp_path / "artifacts"
    (root / "J" / "1").mkdir(parents=True)
    path = root / "J" / "1" / "big.bin"
    data = os.urandom(3 * 1024**2 + 5)
    path.write_bytes(data)
    return root, path, data, Artifact("big.bin", len(data), hashlib.sha256(data).hexdigest(),
                                      "application/octet-stream", "J/1/big.bin")


def test_a_file_that_grows_during_a_download_sends_exactly_its_recorded_size(
        tmp_path: Path) -> None:
    # FileResponse reads to the end of the file: bytes a writer appended after the size was
    # checked ran past the Content-Length (a cut-off download, a server error).
    root, path, data, artifact = _big_artifact(tmp_path)

    def grows_after_checks(request: Request) -> Response:
        response = respond(request, root, "J", artifact)
        with path.open("ab") as more:
            more.write(b"x" * 100)
        return response

    async def body() -> httpx.Response:
        transport = httpx.ASGITransport(app=Starlette(routes=[Route("/f", grows_after_checks)]))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/f")

    answer = asyncio.run(body())
    assert answer.status_code == 200 and answer.headers["content-length"] == str(len(data))
    assert answer.content == data


def test_settling_leaves_a_hard_linked_file_writable_and_refuses_what_it_cannot_read(
        tmp_path: Path) -> None:
    # The mode is the inode's: chmod through the artifact's name changed the task's own file.
    own = tmp_path / "cache.bin"
    own.write_bytes(b"cached")
    directory = tmp_path / "attempt"
    directory.mkdir()
    os.link(own, directory / "out.bin")
    (directory / "alone.bin").write_bytes(b"alone")
    produced = {p.name: p for p in artifacts.collect(directory, 1024)}
    assert produced["out.bin"].size == 6 and produced["alone.bin"].size == 5
    assert stat.S_IMODE(own.stat().st_mode) & 0o200, "the task's own file became read-only"
    assert stat.S_IMODE((directory / "alone.bin").stat().st_mode) == 0o444
    # A directory where a file was (swapped in after the scan): the attempt's refusal, not
    # an OSError that killed the slot process.
    with pytest.raises(artifacts.ArtifactRefused):
        artifacts._settle(tmp_path, "attempt")


def test_a_file_that_shrinks_during_a_download_is_cut_off_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The head already promised the recorded size: the download can only be cut off, which
    # the server says in one line (it was an unhandled error's traceback, the ASGI server's
    # "content shorter than Content-Length").
    root, path, data, artifact = _big_artifact(tmp_path)

    def shrinks_after_checks(request: Request) -> Response:
        response = respond(request, root, "J", artifact)
        os.truncate(path, 1024**2)
        return response

    sent: list[Message] = []

    async def body() -> None:
        app = Starlette(routes=[Route("/f", shrinks_after_checks)])
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if requested:  # the client stays: a disconnect would stop the sending
                await asyncio.Event().wait()
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": "/f", "headers": [],
                   "query_string": b"", "scheme": "http", "server": ("t", 80)}, receive, send)

    asyncio.run(body())
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert sum(len(m.get("body", b"")) for m in bodies) == 1024**2
    assert all(m.get("more_body") for m in bodies)  # never claimed complete
    assert "shrank while it was sent" in caplog.text
