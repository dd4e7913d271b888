"""`scholarsource backup`: ask the configured store for a consistent copy of itself, taken
while the server runs (SQLite: store/sqlite_backup.py). A store that does not copy itself
raises BackupUnsupported, whose message names the tool to use instead."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scholarsource.config import Config
from scholarsource.errors import BackupError, BackupUnsupported, StoreError
from scholarsource.store.base import BackupResult
from scholarsource.store.factory import open_store

__all__ = ["BackupError", "BackupResult", "BackupUnsupported", "backup"]


def backup(config: Config, target: Path, *, force: bool = False) -> BackupResult:
    """Copy the configured store to the file `target`."""
    return asyncio.run(_backup(config, target, force))


async def _backup(config: Config, target: Path, force: bool) -> BackupResult:
    try:
        store = await open_store(config, "cli")
    except BackupError:
        raise
    except StoreError as exc:  # no database in data_dir, or none reachable
        raise BackupError(str(exc)) from None
    try:
        return await store.backup(target, force=force)
    finally:
        await store.close()
