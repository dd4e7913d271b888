"""The one place that knows which store backs a server: open it, migrate it, name it.

Code outside `store/` asks here and gets a `Store`; it never names a backend. The `database`
setting chooses: empty for SQLite in `data_dir`, a PostgreSQL URL for PostgreSQL, whose module
(and driver, an optional extra) is imported only when it is asked for.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Literal

from scholarsource.config import Config
from scholarsource.errors import StoreError
from scholarsource.store import schema
from scholarsource.store.base import Store
from scholarsource.store.sqlite import SqliteStore

# Who opens the store, which sizes and drives its connection:
# - "api": an API worker, whose event loop serves many requests at once (aiosqlite's thread);
# - "pool": the job pool's dispatcher, one caller at a time (statements inline: ~5x faster);
# - "cli": a one-off command (prune, doctor...), which never creates a database.
Role = Literal["api", "pool", "cli"]
ROLES: tuple[Role, ...] = ("api", "pool", "cli")


def _postgres() -> Any:
    """The PostgreSQL store class, imported on demand: a SQLite server needs neither the
    module nor its driver."""
    return importlib.import_module("scholarsource.store.postgres").PostgresStore


def where(config: Config) -> str:
    """The store, for messages: the SQLite file, or the URL with its password masked."""
    return str(config.database) if config.database.is_postgres else str(config.db_path)


async def open_store(config: Config, role: Role) -> Store:
    """Connect to the configured, already migrated store (see `migrate_store`) as `role`."""
    if role not in ROLES:
        raise ValueError(f"unknown store role {role!r}")
    if config.database.is_postgres:
        store: Store = await _postgres().connect(config, role)
        return store
    if role == "cli" and not config.db_path.is_file():
        raise StoreError(f"no database at {config.db_path} (is data_dir right?)")
    return await SqliteStore.open(config.db_path, durability=config.durability,
                                  busy_timeout=config.busy_timeout, inline=role != "api")


def migrate_store(config: Config) -> int:
    """Create or upgrade the configured store's schema; returns its version. Runs in the
    master before anything forks (its connection is closed again), so it is synchronous."""
    if config.database.is_postgres:
        version: int = asyncio.run(_postgres().migrate(config))
        return version
    return schema.migrate(config.db_path)
