"""`scholarsource migrate-to URL`: move what a SQLite data directory still has to run into a
PostgreSQL database, so a team outgrowing one box keeps its queued work.

The server must be stopped: the data directory's lock is held throughout, so none can start
meanwhile. Jobs that have not ended (scheduled, queued, retrying, and running ones, which a
stopped server interrupted: they go back to queued, uncharged) move with their ids, params,
counts, times, queues, schedule fields and keys, and a waiting job with its parents still to
wait for (without `everything` its finished parents stay behind, and their results are
missing from its ctx.parent_results), in batches of BATCH jobs, one transaction each; with
`everything`, finished jobs too, with their artifact rows (the files stay where
artifacts_dir has them). Queue pauses, schedule states and API keys come along.
Ids are unique, so running it again copies nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

from scholarsource.config import Config
from scholarsource.datalock import lock_data_dir
from scholarsource.errors import StoreError
from scholarsource.store.base import Imported, Store
from scholarsource.store.factory import migrate_store, open_store
from scholarsource.store.schema import migrate as migrate_sqlite
from scholarsource.store.sqlite import SqliteStore
from scholarsource.store.url import DatabaseUrl

# Jobs per transaction on the target: big enough that a million jobs take minutes, small
# enough that each batch (with its events) stays a few MB in memory.
BATCH = 500


def migrate_to(config: Config, url: str, *, everything: bool = False) -> Imported:
    """Copy the jobs of `config`'s SQLite data directory that have not ended (`everything`:
    all of them) to the PostgreSQL database at `url`, migrating its schema first. Raises
    ConfigError for a URL that is not PostgreSQL, DataDirInUse while a server runs on the
    data directory, StoreError when there is nothing to read or the target refuses."""
    target = dataclasses.replace(config, database=DatabaseUrl(url))
    if not target.database.is_postgres:
        raise StoreError("migrate-to needs a postgresql:// URL to copy to")
    if not config.db_path.is_file():
        raise StoreError(f"no database at {config.db_path} (is data_dir right?)")
    lock = lock_data_dir(config.data_dir)
    try:
        migrate_sqlite(config.db_path)  # as the next serve would: one schema to read
        migrate_store(target)
        return asyncio.run(_copy(config, target, everything))
    finally:
        os.close(lock)


async def _copy(config: Config, target_config: Config, everything: bool) -> Imported:
    source = await SqliteStore.open(config.db_path, durability=config.durability,
                                    busy_timeout=config.busy_timeout, inline=True)
    try:
        target = await open_store(target_config, "cli")
        try:
            total, after = Imported(), 0
            while True:
                carried, next_after = await source.export_rows(after, BATCH,
                                                               everything=everything)
                total.add(await target.import_rows(carried))
                if next_after is None:
                    total.keys = await _copy_keys(source, target)
                    return total
                after = next_after
        finally:
            await target.close()
    finally:
        await source.close()


async def _copy_keys(source: Store, target: Store) -> int:
    """The API keys (digests and revocations alike), each once: one already there stays as
    it is. Dashboard sessions stay behind: a login on the new store is one form away."""
    copied = 0
    for key in await source.list_keys():
        if await target.find_key(key.id) is None:
            await target.create_key(key)
            copied += 1
    return copied
