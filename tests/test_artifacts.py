"""Artifact names, the check of an attempt's files, the sweep's choice of strays, and ctx's
side: what `ctx.artifact` gives a task and what `ctx.parent_artifacts` holds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from scholarsource import artifacts
from scholarsource.api.artifacts import _file
from scholarsource.errors import NotFound
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

    assert _file(root, "J", art("J/1/a.txt")).read_text() == "mine"
    (root / "J" / "2").symlink_to(outside)  # a directory swapped for a link
    for path in ("K/1/a.txt", "J/2/a.txt", "J/x/a.txt", "J/1/../1/a.txt", "J/1/b.txt"):
        with pytest.raises(NotFound):
            _file(root, "J", art(path))
