"""`scholarsource backup`: a consistent copy under concurrent commits, and clean refusals."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scholarsource.backup import BackupError
from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite_backup import copy_database

# The writer gives up after this many commits, so a copy that keeps restarting fails the
# test instead of hanging it.
_WRITER_CAP = 200_000


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SCHOLARSOURCE_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    migrate(data / "scholarsource.db")
    return data


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_a_stepwise_copy_finishes_and_is_consistent_while_another_connection_commits(
        tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.executemany("INSERT INTO t (v) VALUES (randomblob(500))", [()] * 2000)
    conn.close()
    commits = 0
    stop = threading.Event()

    def write() -> None:
        nonlocal commits
        writer = sqlite3.connect(db, isolation_level=None, timeout=10)
        while not stop.is_set() and commits < _WRITER_CAP:
            writer.execute("INSERT INTO t (v) VALUES (randomblob(500))")
            commits += 1
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        # The writer going first: on a busy box (a CI run) the thread could start late
        # enough for the whole copy to finish before its first commit.
        deadline = time.monotonic() + 10
        while commits < 10 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        before = commits
        result = copy_database(db, tmp_path / "copy.db", step_pages=1)
        during = commits - before
        still_writing = thread.is_alive()
    finally:
        stop.set()
        thread.join()
    assert during > 0 and still_writing, "the copy did not overlap the writes"
    copy = sqlite3.connect(result.path)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = copy.execute("SELECT count(*), max(id) FROM t").fetchone()
    assert rows[0] == rows[1] >= 2000  # a snapshot: no gaps, nothing torn
    copy.close()


def test_backup_command_writes_a_copy_and_refuses_to_overwrite_it(data_dir: Path,
                                                                  tmp_path: Path) -> None:
    target = tmp_path / "backup.db"
    first = invoke("backup", str(target), "--data-dir", str(data_dir))
    assert first.exit_code == EXIT_OK, first.output
    assert f"to {target}" in first.stdout
    assert sqlite3.connect(target).execute("PRAGMA quick_check").fetchone() == ("ok",)

    again = invoke("backup", str(target), "--data-dir", str(data_dir))
    assert again.exit_code == EXIT_FAILURE
    assert again.stderr.startswith("error: ") and "--force" in again.stderr

    Path(f"{target}-wal").write_bytes(b"stale")
    forced = invoke("backup", str(target), "--data-dir", str(data_dir), "--force")
    assert forced.exit_code == EXIT_OK, forced.output
    assert not Path(f"{target}-wal").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("target", "code", "message"), [
    ("{data}/scholarsource.db", EXIT_FAILURE, "is the live database itself"),
    ("{tmp}/missing/backup.db", EXIT_FAILURE, "does not exist"),
    ("{tmp}", EXIT_CONFIG, "is a directory"),
])
def test_backup_command_refuses_bad_targets_cleanly(data_dir: Path, tmp_path: Path,
                                                    target: str, code: int, message: str) -> None:
    path = target.format(data=data_dir, tmp=tmp_path)
    result = invoke("backup", path, "--data-dir", str(data_dir), "--force")
    assert result.exit_code == code, result.output
    assert "rror: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.output


def test_backup_of_a_missing_database_is_a_clean_error(tmp_path: Path) -> None:
    result = invoke("backup", str(tmp_path / "b.db"), "--data-dir", str(tmp_path / "none"))
    assert result.exit_code == EXIT_FAILURE
    assert "no database at" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_failed_copy_leaves_no_file_behind(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackupError):
        copy_database(not_a_db, tmp_path / "out.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]
