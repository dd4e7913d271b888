"""`scholarsource prune`: deletes what is past its age (or --older-than), counts without
deleting in --dry-run, converts an older file with --vacuum, and refuses bad input cleanly."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from scholarsource.store import schema
from scholarsource.store.base import NewJob
from scholarsource.store.sqlite import SqliteStore
from tests.store.test_sqlite import failed, ok
from tests.test_backup import _clean_environment

__all__ = ["_clean_environment"]  # autouse: no SCHOLARSOURCE_* from the shell leaks in

DAY = 86400


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def jobs_by_status(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
    finally:
        conn.close()


def make_history(db: Path, days_ago: float, n: int = 4) -> None:
    """`n` succeeded jobs and one dead, finished `days_ago` days ago, and one queued."""
    async def main() -> None:
        store = await SqliteStore.open(db, inline=True)
        try:
            await store.submit_many([NewJob("noop", {"x": "y" * 1000}, "default", 0, 1)
                                     for _ in range(n + 1)])
            claims = await store.claim("p", n + 1, 30)
            await store.finish([ok(c.id, c.token) for c in claims[:n]]
                               + [failed(claims[n].id, claims[n].token)], max_crashes=3)
            await store.submit(NewJob("noop", {}, "default", 0, 1))
        finally:
            await store.close()

    asyncio.run(main())
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE finished_at IS NOT NULL",
                 (days_ago * DAY,))
    conn.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    schema.migrate(data / "scholarsource.db")
    return data


def test_dry_run_counts_and_prune_deletes_past_the_configured_ages(data_dir: Path) -> None:
    db = data_dir / "scholarsource.db"
    make_history(db, days_ago=10)  # past succeeded's 7 days, within dead's 30
    dry = invoke("prune", "--data-dir", str(data_dir), "--dry-run")
    assert dry.exit_code == EXIT_OK, dry.output
    assert dry.stdout.startswith("would prune 4 job(s) (succeeded 4, cancelled 0, dead 0)")
    assert jobs_by_status(db) == {"succeeded": 4, "dead": 1, "queued": 1}

    done = invoke("prune", "--data-dir", str(data_dir), "--json")
    assert done.exit_code == EXIT_OK, done.output
    result = json.loads(done.stdout)
    assert result["counts"] == {"succeeded": 4, "cancelled": 0, "dead": 0}
    assert result["auto_vacuum"] == "incremental" and not result["dry_run"]
    assert jobs_by_status(db) == {"dead": 1, "queued": 1}


def test_older_than_overrides_every_age(data_dir: Path) -> None:
    db = data_dir / "scholarsource.db"
    make_history(db, days_ago=2)
    assert invoke("prune", "--data-dir", str(data_dir), "--older-than", "3d").stdout.startswith(
        "pruned 0 job(s)")
    result = invoke("prune", "--data-dir", str(data_dir), "--older-than", "1d")
    assert result.stdout.startswith("pruned 5 job(s) (succeeded 4, cancelled 0, dead 1)")
    assert jobs_by_status(db) == {"queued": 1}


@pytest.mark.parametrize(("value", "message"), [
    ("5 parsecs", "'5 parsecs' is not a duration like '90s'"),
    ("-1s", "'-1s' is not a duration"),
    ("\u0661s", "is not a duration"),
    ("0", "must be more than zero"),
])
def test_a_bad_older_than_is_a_usage_error(data_dir: Path, value: str, message: str) -> None:
    result = invoke("prune", "--data-dir", str(data_dir), "--older-than", value)
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "--older-than" in result.stderr and message in result.stderr


def test_a_bad_retention_setting_is_a_config_error(data_dir: Path) -> None:
    result = CliRunner().invoke(main, ["prune", "--data-dir", str(data_dir)],
                                env={"SCHOLARSOURCE_RETENTION_DEAD": "5 parsecs"})
    assert result.exit_code == EXIT_CONFIG
    assert result.stderr.startswith("error: SCHOLARSOURCE_RETENTION_DEAD in the environment")


def test_no_database_or_an_old_one_is_a_clean_error(tmp_path: Path) -> None:
    missing = invoke("prune", "--data-dir", str(tmp_path / "none"))
    assert missing.exit_code == EXIT_FAILURE and "no database at" in missing.stderr
    assert not (tmp_path / "none").exists()
    old = tmp_path / "old"
    old.mkdir()
    conn = sqlite3.connect(old / "scholarsource.db", isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.close()
    result = invoke("prune", "--data-dir", str(old))
    assert result.exit_code == EXIT_FAILURE
    assert "has schema 1" in result.stderr and "scholarsource serve" in result.stderr
    assert "Traceback" not in result.output


def test_vacuum_converts_an_older_file_so_that_it_gives_space_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "scholarsource.db"
    # A file made before V7 (auto_vacuum none): it has tables, so migrating keeps the mode.
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.close()
    schema.migrate(db)
    make_history(db, days_ago=10, n=400)
    plain = invoke("prune", "--data-dir", str(data))
    assert "auto_vacuum none (freed space is reused, not given back" in plain.stdout
    size = db.stat().st_size
    vacuumed = json.loads(invoke("prune", "--data-dir", str(data), "--vacuum", "--json").stdout)
    assert vacuumed["vacuumed"] and vacuumed["auto_vacuum"] == "incremental"
    assert vacuumed["bytes_after"] < size / 2
