"""The pool's note of the job it is handling: a hint that must never stop the pool."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from scholarsource.pool.suspect import Suspect
from scholarsource.store.base import Claim


def _claim(job_id: str, token: int) -> Claim:
    return Claim(id=job_id, task="noop", params_json="{}", attempt=1, max_attempts=1,
                 timeout=None, token=token)


def test_a_mark_outlives_the_pool_and_is_taken_once(tmp_path: Path) -> None:
    first = Suspect.in_dir(str(tmp_path))
    first.mark(_claim("abc", 42))
    first.close()  # the pool died while handling abc
    second = Suspect.in_dir(str(tmp_path))
    assert second.take() == ("abc", 42)
    assert second.take() is None  # cleared: one pool death, one charge


def test_a_file_it_cannot_keep_costs_a_warning_not_the_pool(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A directory it cannot write to (gone, read-only, or a full disk before the file held
    # its first bytes): every call is a no-op and the old rule applies.
    suspect = Suspect.in_dir(str(tmp_path / "missing"))
    suspect.mark(_claim("abc", 42))
    suspect.clear()
    assert suspect.take() is None
    suspect.close()
    assert "cannot keep pool.suspect" in caplog.text


def test_a_write_that_fails_after_the_open_costs_a_warning_not_the_pool(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # A disk that fills after the file was opened (on btrfs or ZFS even an overwrite needs
    # new blocks): the write fails and says so once, and marking stops. A shared mapping of
    # the file would have killed the pool with SIGBUS here instead (seen: a crash loop).
    suspect = Suspect.in_dir(str(tmp_path))

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    suspect.mark(_claim("abc", 42))
    suspect.clear()
    suspect.mark(_claim("def", 7))
    assert caplog.text.count("cannot keep pool.suspect") == 1
    monkeypatch.undo()
    assert suspect.take() is None  # nothing half-written names a job
