"""`scholarsource prune`: the pool's retention on demand, on the data directory.

Safe while the server runs: it deletes in the same short batches as the pool, pausing after
each as long as it held the write lock, so submits keep flowing. `--vacuum` is the exception:
it rewrites the whole file under the write lock (see `schema.migrate` for why start-up does
not do it), for a quiet time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from scholarsource.config import Config, Retention
from scholarsource.errors import ScholarSourceError
from scholarsource.pool.retention import Pruner
from scholarsource.store.factory import open_store
from scholarsource.store.schema import SCHEMA_VERSION

_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}


class PruneError(ScholarSourceError):
    """Raised when the database cannot be pruned; the message says why."""


@dataclass(frozen=True)
class PruneResult:
    """What `prune` did, or with `dry_run` would do."""

    counts: dict[str, int]  # final state -> jobs deleted (or that would be)
    dry_run: bool
    vacuumed: bool
    bytes_before: int  # the database and its WAL
    bytes_after: int
    auto_vacuum: str  # "incremental" once the file gives space back
    longest_batch: float  # seconds


def file_bytes(db: Path) -> int:
    """The database file and its WAL, in bytes."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def prune(config: Config, retention: Retention, *, dry_run: bool = False,
          vacuum: bool = False) -> PruneResult:
    """Delete the finished jobs older than `retention` from the configured database."""
    db = config.db_path
    if not db.is_file():
        raise PruneError(f"no database at {db} (is data_dir right?)")
    _check_schema(db)
    before = file_bytes(db)
    try:
        counts, longest = asyncio.run(_prune(config, retention, dry_run, vacuum))
    except PruneError:
        raise
    except ScholarSourceError as exc:  # StoreUnavailable: locked past busy_timeout, disk full
        raise PruneError(f"cannot prune {db}: {exc}") from None
    return PruneResult(counts, dry_run, vacuum and not dry_run, before, file_bytes(db),
                       _auto_vacuum(db), longest)


async def _prune(config: Config, retention: Retention, dry_run: bool,
                 vacuum: bool) -> tuple[dict[str, int], float]:
    store = await open_store(config, "cli")
    try:
        pruner = Pruner(retention)
        if dry_run:
            return await pruner.count(store), 0.0
        report = await pruner.run(store, budget=None)
        if report.error is not None:
            raise PruneError(f"the database refused a batch after {report.total} job(s) were "
                             f"pruned: {report.error}")
        if vacuum:
            await store.vacuum()
        return report.deleted, report.longest_batch
    finally:
        await store.close()


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=10)


def _check_schema(db: Path) -> None:
    try:
        conn = _connect_ro(db)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise PruneError(f"cannot read {db}: {exc}") from None
    if version != SCHEMA_VERSION:
        raise PruneError(f"{db} has schema {version}, this ScholarSource {SCHEMA_VERSION}: "
                         + ("start `scholarsource serve` once to migrate it"
                            if version < SCHEMA_VERSION else "upgrade ScholarSource"))


def _auto_vacuum(db: Path) -> str:
    conn = _connect_ro(db)
    try:
        return _AUTO_VACUUM[int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])]
    finally:
        conn.close()
