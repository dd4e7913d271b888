"""`scholarsource doctor`: each check's OK, WARN and FAIL, the JSON, and the exit code."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from scholarsource import doctor
from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_OK, EXIT_UNHEALTHY
from scholarsource.store import sqlite_checks
from scholarsource.store.schema import SCHEMA_VERSION, migrate

CHECKS = ["config", "sqlite", "data_dir", "database", "disk", "sizing"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SCHOLARSOURCE_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def run(*args: str) -> tuple[int, dict[str, Any]]:
    """doctor --json with `args`: the exit code and each check by name."""
    result = CliRunner().invoke(main, ["doctor", "--json", *args])
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert report["ok"] is (result.exit_code == EXIT_OK)
    return result.exit_code, {c["name"]: c for c in report["checks"]}


def test_a_fresh_data_dir_is_healthy(tmp_path: Path) -> None:
    migrate(tmp_path / "data" / "scholarsource.db")
    code, checks = run("--data-dir", str(tmp_path / "data"))
    assert code == EXIT_OK
    assert list(checks) == CHECKS
    assert all(c["status"] != "FAIL" for c in checks.values())
    assert "passes quick_check" in checks["database"]["message"]
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".doctor")] == []


def test_text_output_names_every_check_and_its_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["doctor", "--data-dir", str(tmp_path / "d"),
                                       "--slots", "100000"])
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if not line.startswith(" ")] == CHECKS
    assert any(line.startswith("WARN  sizing") for line in lines)
    assert any(line.strip().startswith("fix: set slots to at most") for line in lines)


def test_an_invalid_config_fails_with_one_finding(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("slots = -1\n")
    code, checks = run("--config", str(bad))
    assert code == EXIT_UNHEALTHY
    assert list(checks) == ["config"]
    assert "slots cannot be negative" in checks["config"]["message"]


def test_a_damaged_database_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "scholarsource.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 300,)] * 2000)
    conn.commit()
    conn.close()
    with open(data / "scholarsource.db", "r+b") as fh:  # scribble over a b-tree page
        fh.seek(4096 * 3)
        fh.write(os.urandom(4096))
    code, checks = run("--data-dir", str(data))
    assert code == EXIT_UNHEALTHY
    assert checks["database"]["status"] == "FAIL"
    assert "restore the latest backup" in checks["database"]["fix"]


def test_a_database_from_a_newer_release_fails(tmp_path: Path) -> None:
    db = tmp_path / "data" / "scholarsource.db"
    migrate(db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    code, checks = run("--data-dir", str(db.parent))
    assert code == EXIT_UNHEALTHY
    assert "newer than this ScholarSource understands" in checks["database"]["message"]


def test_a_data_dir_that_cannot_be_created_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, checks = run("--data-dir", str(blocker / "data"))
    assert code == EXIT_UNHEALTHY
    assert checks["data_dir"]["status"] == "FAIL"


def test_low_disk_warns_then_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for free, status in ((500 * 1024**2, "WARN"), (50 * 1024**2, "FAIL")):
        monkeypatch.setattr(doctor.shutil, "disk_usage", lambda _, free=free: _usage(free))
        assert doctor.check_disk(doctor.load_config(overrides={
            "data_dir": str(tmp_path)})).status.value == status


def _usage(free: int) -> SimpleNamespace:
    return SimpleNamespace(free=free)


def test_an_old_sqlite_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_checks.sqlite3, "sqlite_version_info", (3, 31, 1))
    check = sqlite_checks.check_sqlite(doctor.load_config(env={}))
    assert check.status is doctor.Status.FAIL
    assert "older than 3.38.0" in check.message and check.fix
