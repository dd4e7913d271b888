"""doctor and backup ask the store: SQLite's findings and copy, and what a store that lives
elsewhere (PostgreSQL) answers instead."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scholarsource.cli import main
from scholarsource.errors import BackupUnsupported
from scholarsource.exitcodes import EXIT_FAILURE, EXIT_UNHEALTHY
from scholarsource.findings import Check, Status
from scholarsource.store.base import BackupResult
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore
from tests.store.test_sqlite import run

URL = "postgresql://jobs:s3cret@db.invalid/jobs"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SCHOLARSOURCE_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def remote_store(monkeypatch: pytest.MonkeyPatch, connect: Any) -> None:
    """A stand-in scholarsource.store.postgres whose PostgresStore.connect is `connect`."""
    module = types.ModuleType("scholarsource.store.postgres")
    module.PostgresStore = type("PostgresStore", (), {  # type: ignore[attr-defined]
        "connect": classmethod(lambda cls, config, role: connect(config, role))})
    monkeypatch.setitem(sys.modules, "scholarsource.store.postgres", module)


class _Remote:
    """A store that answers doctor and backup the way a server-side database does."""

    closed = False

    async def checks(self) -> list[Check]:
        return [Check("connection", Status.OK, "server 15.4"),
                Check("queue_lag", Status.WARN, "oldest queued job waits 90 s")]

    async def backup(self, target: Path, *, force: bool = False) -> BackupResult:
        raise BackupUnsupported("PostgreSQL is backed up with its own tools: run pg_dump")

    async def close(self) -> None:
        _Remote.closed = True


def test_sqlite_checks_are_integrity_and_schema_on_a_read_only_connection(
        tmp_path: Path) -> None:
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> list[Check]:
        ro = await SqliteStore.open(db, inline=True, read_only=True)
        try:
            with pytest.raises(Exception, match="readonly"):
                await ro._db.fetchall("DELETE FROM jobs")
            return await ro.checks()
        finally:
            await ro.close()

    (check,) = run(db, body, inline=True)
    assert (check.name, check.status) == ("database", Status.OK)
    assert "passes quick_check" in check.message


def test_doctor_reports_the_remote_stores_own_findings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect(config: Any, role: str) -> _Remote:
        assert role == "cli"
        return _Remote()

    remote_store(monkeypatch, connect)
    result = CliRunner().invoke(main, ["doctor", "--json", "--data-dir", str(tmp_path)],
                                env={"SCHOLARSOURCE_DATABASE": URL})
    checks = [c["name"] for c in json.loads(result.stdout)["checks"]]
    assert checks == ["config", "connection", "queue_lag", "disk", "sizing"]
    assert _Remote.closed


def test_doctor_names_an_unreachable_store_without_its_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect(config: Any, role: str) -> _Remote:
        raise OSError("connection refused")

    remote_store(monkeypatch, connect)
    result = CliRunner().invoke(main, ["doctor", "--json", "--data-dir", str(tmp_path)],
                                env={"SCHOLARSOURCE_DATABASE": URL})
    assert result.exit_code == EXIT_UNHEALTHY
    database = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["database"]
    assert database["status"] == "FAIL"
    assert "cannot connect to postgresql://jobs:********@db.invalid/jobs" in database["message"]
    assert "s3cret" not in result.output


def test_backup_of_a_store_that_does_not_copy_itself_says_what_to_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect(config: Any, role: str) -> _Remote:
        return _Remote()

    remote_store(monkeypatch, connect)
    result = CliRunner().invoke(main, ["backup", str(tmp_path / "b.db"), "--data-dir",
                                       str(tmp_path)], env={"SCHOLARSOURCE_DATABASE": URL})
    assert result.exit_code == EXIT_FAILURE
    assert "error: PostgreSQL is backed up with its own tools: run pg_dump" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "b.db").exists()


def test_sqlite_backup_goes_through_the_store(tmp_path: Path) -> None:
    migrate(tmp_path / "scholarsource.db")
    result = CliRunner().invoke(main, ["backup", str(tmp_path / "copy.db"), "--data-dir",
                                       str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"backed up {tmp_path / 'scholarsource.db'} to {tmp_path / 'copy.db'}" in result.stdout
