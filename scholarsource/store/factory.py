"""The one place that knows which store backs a server: open it, migrate it, name it.

Code outside `store/` asks here and gets a `Store`; it never names a backend. The `database`
setting chooses: empty for SQLite in `data_dir`, a PostgreSQL URL for PostgreSQL, whose module
(and driver, an optional extra) is imported only when it is asked for.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sqlite3
from typing import Any, Literal

from scholarsource.config import Config
from scholarsource.datalock import lock_data_dir
from scholarsource.errors import ConfigError, DataDirInUse, StoreError
from scholarsource.findings import Check, Status
from scholarsource.store import schema, sqlite_checks
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
    module nor its driver (an optional extra)."""
    try:
        return importlib.import_module("scholarsource.store.postgres").PostgresStore
    except ImportError as exc:
        raise ConfigError(f"database names a PostgreSQL server, but {exc.name or 'its driver'} "
                          f"is not installed: pip install 'scholarsource[postgres]'") from None


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


def migrate_unless_served(config: Config) -> None:
    """Migrate the store for a one-off command that may come before the first `serve` (a
    first API key), but never under a running server: that server migrated the store at its
    start and runs against that schema. A newer one under it, from a newer package's command
    before the restart, could drop what it reads (schema V19 dropped the index an older
    pool's claim walks: each of its claims then sorted the queue). Raises StoreError, saying
    to restart the server, when one runs on an older schema."""
    if config.database.is_postgres:
        # Servers on other boxes hold no lock here: only a store no server ever ran on is
        # migrated; for any other, the command's own version check says what to do.
        if asyncio.run(_found(config)) == 0:
            migrate_store(config)
        return
    try:
        lock = lock_data_dir(config.data_dir, shared=True)
    except DataDirInUse:
        found = asyncio.run(_found(config)) if config.db_path.is_file() else 0
        if found < schema.SCHEMA_VERSION:
            raise StoreError(
                f"a server holds {config.data_dir} and its store has schema {found} (this "
                f"ScholarSource has {schema.SCHEMA_VERSION}). If the server is starting, it "
                "may be creating or migrating the store: run this again once it is ready. "
                "If it runs an older ScholarSource, restart it with this one, which "
                "migrates the store at start.") from None
        return
    except OSError as exc:
        raise ConfigError(f"cannot use data directory {config.data_dir}: {exc}") from None
    try:
        migrate_store(config)
    finally:
        os.close(lock)


async def _found(config: Config) -> int:
    """The schema version the configured store holds (0: none yet)."""
    store = await open_store(config, "cli")
    try:
        return (await store.schema_version()).found
    finally:
        await store.close()


async def check_store(config: Config) -> list[Check]:
    """Doctor's findings about the store, read-only: what the backend needs before it can
    open (SQLite: its library and the data directory), then `Store.checks` on the store."""
    if config.database.is_postgres:
        try:
            store = await open_store(config, "cli")
        except Exception as exc:  # the driver's own errors: unreachable, refused, unknown db
            return [Check("database", Status.FAIL, f"cannot connect to {where(config)}: {exc}",
                          "check the database setting, the server and its pg_hba.conf")]
        return await _checks(store)
    found = [sqlite_checks.check_sqlite(config), sqlite_checks.check_data_dir(config)]
    if not config.db_path.exists():
        return [*found, Check("database", Status.OK,
                              f"no database at {config.db_path} yet; serve creates it")]
    try:
        store = await SqliteStore.open(config.db_path, busy_timeout=10, inline=True,
                                       read_only=True)
    except sqlite3.Error as exc:
        return [*found, Check("database", Status.FAIL, f"cannot read {config.db_path}: {exc}",
                              sqlite_checks.RESTORE)]
    return [*found, *await _checks(store)]


async def _checks(store: Store) -> list[Check]:
    try:
        return await store.checks()
    finally:
        await store.close()
