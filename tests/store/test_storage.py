"""What the store says about itself: its size (for /api/stats and /metrics) and its schema."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import SchemaVersion
from scholarsource.store.sqlite import SqliteStore
from tests.store.test_sqlite import job, run


def test_storage_is_the_database_file_and_its_wal(tmp_path: Path, inline: bool) -> None:
    db = tmp_path / "q.db"

    async def body(store: SqliteStore) -> None:
        await store.submit_many([job() for _ in range(200)])
        storage = await store.storage()
        assert storage.database_bytes == os.stat(db).st_size > 0
        assert storage.log_bytes == os.stat(f"{db}-wal").st_size > 0  # not checkpointed yet
        assert storage.reclaim == "incremental"  # a file migrate created
        assert storage.to_json() == {"size_bytes": storage.database_bytes,
                                     "wal_bytes": storage.log_bytes}

    run(db, body, inline)


def test_a_file_made_before_auto_vacuum_says_it_does_not_give_space_back(
        tmp_path: Path, inline: bool) -> None:
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.close()

    async def body(store: SqliteStore) -> None:
        assert (await store.storage()).reclaim == "none"

    run(db, body, inline)


def test_schema_version_against_the_code(tmp_path: Path, inline: bool) -> None:
    async def body(store: SqliteStore) -> SchemaVersion:
        return await store.schema_version()

    current = run(tmp_path / "q.db", body, inline)
    assert current == SchemaVersion(schema.SCHEMA_VERSION, schema.SCHEMA_VERSION)
    assert current.problem() is None
    assert "start `scholarsource serve` once" in str(SchemaVersion(1, 12).problem())
    assert "upgrade ScholarSource" in str(SchemaVersion(13, 12).problem())
