"""`scholarsource prune`: the pool's retention on demand, on the configured store.

Safe while the server runs: it deletes in the same short batches as the pool, pausing after
each as long as it held the write lock, so submits keep flowing. `--vacuum` is the exception:
it rewrites the whole file under the write lock (see `schema.migrate` for why start-up does
not do it), for a quiet time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from scholarsource.config import Config, Retention
from scholarsource.errors import ScholarSourceError
from scholarsource.pool.artifacts import Files
from scholarsource.pool.retention import Pruner
from scholarsource.store.factory import open_store, where


class PruneError(ScholarSourceError):
    """Raised when the database cannot be pruned; the message says why."""


@dataclass(frozen=True)
class PruneResult:
    """What `prune` did, or with `dry_run` would do."""

    counts: dict[str, int]  # final state -> jobs deleted (or that would be)
    dry_run: bool
    vacuumed: bool
    bytes_before: int  # the database and its write-ahead log
    bytes_after: int
    auto_vacuum: str  # "incremental" once the file gives space back (Storage.reclaim)
    longest_batch: float  # seconds


def prune(config: Config, retention: Retention, *, dry_run: bool = False,
          vacuum: bool = False) -> PruneResult:
    """Delete the finished jobs older than `retention` from the configured store."""
    try:
        return asyncio.run(_prune(config, retention, dry_run, vacuum))
    except PruneError:
        raise
    except ScholarSourceError as exc:  # StoreUnavailable: locked past busy_timeout, disk full
        raise PruneError(f"cannot prune {where(config)}: {exc}") from None


async def _prune(config: Config, retention: Retention, dry_run: bool,
                 vacuum: bool) -> PruneResult:
    store = await open_store(config, "cli")
    try:
        if problem := (await store.schema_version()).problem():
            raise PruneError(f"{where(config)} {problem}")
        before = await store.storage()
        pruner = Pruner(retention, Files.of(config))
        if dry_run:
            counts, longest = await pruner.count(store), 0.0
        else:
            report = await pruner.run(store, budget=None)
            if report.error is not None:
                raise PruneError(f"the database refused a batch after {report.total} job(s) "
                                 f"were pruned: {report.error}")
            if vacuum:
                await store.vacuum()
            counts, longest = report.deleted, report.longest_batch
        after = await store.storage()
    finally:
        await store.close()
    return PruneResult(counts, dry_run, vacuum and not dry_run,
                       before.database_bytes + before.log_bytes,
                       after.database_bytes + after.log_bytes, after.reclaim, longest)
