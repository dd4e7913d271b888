"""The backends every store contract test runs on: SQLite through aiosqlite (the API's
driver), SQLite inline (the pool's), and PostgreSQL (a fresh database per test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scholarsource.store import schema
from scholarsource.store.base import Store
from scholarsource.store.postgres import PostgresStore
from scholarsource.store.sqlite import SqliteStore

NAMES = ("aiosqlite", "inline", "postgres")


@dataclass(frozen=True)
class Backend:
    """One backend under test; `url` is the PostgreSQL test database."""

    name: str
    url: str | None = None

    async def open(self, path: Path) -> Store:
        """A store on this backend (for SQLite: the file at `path`, migrated)."""
        if self.url is not None:
            return await PostgresStore.open(self.url, role="pool")
        schema.migrate(path)
        return await SqliteStore.open(path, inline=self.name == "inline")

    async def query(self, store: Store, statement: str) -> list[Any]:
        """Run one SQL statement the test needs (e.g. to make time pass); its rows. Write it
        in the SQL both backends share."""
        assert isinstance(store, PostgresStore | SqliteStore)
        return await store._db.fetchall(statement)


def sqlite_backend(inline: bool) -> Backend:
    """The SQLite backend of one driver, for the tests of SQLite itself."""
    return Backend("inline" if inline else "aiosqlite")
