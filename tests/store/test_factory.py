"""open_store / migrate_store: the one door to the store, whatever the backend."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from scholarsource.config import Config
from scholarsource.errors import ConfigError, StoreError
from scholarsource.store import schema
from scholarsource.store.factory import migrate_store, open_store, where
from scholarsource.store.sqlite import SqliteStore, _InlineDriver, _ThreadDriver


def test_sqlite_roles_open_the_data_dir_database_with_their_driver(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path), durability="full", busy_timeout=2.5)
    assert migrate_store(config) == schema.SCHEMA_VERSION
    assert config.db_path.is_file()

    async def body() -> None:
        for role, driver in (("api", _ThreadDriver), ("pool", _InlineDriver),
                             ("cli", _InlineDriver)):
            store = await open_store(config, role)  # type: ignore[arg-type]
            try:
                assert isinstance(store, SqliteStore) and isinstance(store._db.raw, driver)
                assert await store._db.fetchall("PRAGMA synchronous") == [(2,)]  # FULL
                # Each waits for the lock itself, in shorter steps (store/busy.py).
                assert await store._db.fetchall("PRAGMA busy_timeout") == [(0,)]
                assert store._db.raw.busy_timeout == 2.5
            finally:
                await store.close()

    asyncio.run(body())


def test_a_one_off_command_never_creates_a_database(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path / "typo"))
    with pytest.raises(StoreError, match="no database at .*typo"):
        asyncio.run(open_store(config, "cli"))
    assert not config.db_path.exists()


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="role"):
        asyncio.run(open_store(Config(data_dir=str(tmp_path)), "worker"))  # type: ignore[arg-type]


def test_a_postgresql_url_goes_to_the_postgres_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []

    class PostgresStore:  # records what the factory asks of the real one
        @classmethod
        async def connect(cls, config: Config, role: str) -> str:
            calls.append(("connect", (config.database.reveal(), role)))
            return "a store"

        @classmethod
        async def migrate(cls, config: Config) -> int:
            calls.append(("migrate", config.database.reveal()))
            return 7

    module = types.ModuleType("scholarsource.store.postgres")
    module.PostgresStore = PostgresStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scholarsource.store.postgres", module)
    url = "postgresql://u:pw@db/jobs"
    config = Config(data_dir=str(tmp_path), database=url)  # type: ignore[arg-type]
    assert asyncio.run(open_store(config, "cli")) == "a store"  # type: ignore[comparison-overlap]
    assert calls == [("connect", (url, "cli"))]
    assert not config.db_path.exists()
    assert where(config) == "postgresql://u:********@db/jobs"


def test_migrate_store_on_postgres_runs_the_backend_migration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("scholarsource.store.postgres")

    class PostgresStore:
        @classmethod
        async def migrate(cls, config: Config) -> int:
            return 42

    module.PostgresStore = PostgresStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scholarsource.store.postgres", module)
    config = Config(data_dir=str(tmp_path), database="postgres://db/x")  # type: ignore[arg-type]
    assert migrate_store(config) == 42
    assert not config.db_path.exists()


def test_a_postgresql_url_without_the_postgres_extra_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scholarsource.store.postgres", None)  # import fails
    config = Config(data_dir=str(tmp_path), database="postgresql://u:pw@db/x")  # type: ignore[arg-type]
    for attempt in (lambda: migrate_store(config),
                    lambda: asyncio.run(open_store(config, "api"))):
        with pytest.raises(ConfigError, match=r"pip install 'scholarsource\[postgres\]'"):
            attempt()
