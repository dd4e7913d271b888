"""The pool's note of the job it is handling: a hint that must never stop the pool."""

from __future__ import annotations

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
