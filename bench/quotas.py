"""What quotas cost a submit in the store, without HTTP: CPU per job of `Store.admit` on the
API's driver (aiosqlite), against the plain insert it replaced (`submit_many`).

Cases, each with groups of 1 job (a lone submit) and of 16 (a group commit under load):
- plain:       submit_many, no quota at all (the code before quotas);
- no bucket:   admit with the server-wide max_queued only (the default config): the guarded
               one-statement insert;
- tenant rate: admit with `[tenants.default] rate` (a bucket that never runs dry): the
               quota transaction (BEGIN IMMEDIATE, read, insert, save, COMMIT);
- key + rate:  the same with an API key's bucket too.
CPU is the process's (the event loop's thread and aiosqlite's together), so the figure holds
on a busy machine better than wall time does. With `--database URL` (an empty database, which
it migrates and whose jobs it deletes) the same runs on PostgreSQL, where every case but
plain is the quota transaction, and wall time per job is shown too (the server's CPU is
not the process's).

    .venv/bin/python bench/quotas.py --jobs 20000 [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from scholarsource.limits import Rate, TenantLimits
from scholarsource.quotas import Ask, QuotaPolicy
from scholarsource.store import schema
from scholarsource.store.base import NewJob, Store
from scholarsource.store.postgres import PostgresStore
from scholarsource.store.postgres import schema as pg_schema
from scholarsource.store.sqlite import SqliteStore

JOB = NewJob("noop", {}, "default", 0, 1)
BIG = Rate(10**9, 1.0)
CASES = {
    "no bucket": (Ask("default"), QuotaPolicy(max_queued=10**9)),
    "tenant rate": (Ask("default"), QuotaPolicy({"default": TenantLimits(rate=BIG)}, 10**9)),
    "key + rate": (Ask("default", "key-1", BIG),
                   QuotaPolicy({"default": TenantLimits(rate=BIG)}, 10**9)),
}


async def open_store(path: Path, database: str | None) -> Store:
    """A fresh SQLite file at `path`, or the PostgreSQL database emptied of jobs."""
    if database is None:
        schema.migrate(path)
        return await SqliteStore.open(path)
    pg_schema.migrate(database)
    store = await PostgresStore.open(database, role="api")
    await store._db.fetchall("TRUNCATE jobs, job_events, quota_buckets, tenant_live")
    return store


async def measure(path: Path, database: str | None, case: str, group: int,
                  jobs: int) -> tuple[float, float]:
    """CPU and wall microseconds per job of submitting `jobs` jobs in groups of `group`."""
    store = await open_store(path, database)
    try:
        groups = max(1, jobs // group)
        began, wall = time.process_time(), time.perf_counter()
        for _ in range(groups):
            if case == "plain":
                await store.submit_many([JOB] * group)
            else:
                ask, policy = CASES[case]
                await store.admit([(ask, [JOB])] * group, policy)
        done = groups * group
        return ((time.process_time() - began) / done * 1e6,
                (time.perf_counter() - wall) / done * 1e6)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--database", help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    print(f"{'case':<12} {'group':>5} {'CPU us/job':>10} {'wall us/job':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for n, case in enumerate(["plain", *CASES]):
            for group in (1, 16):
                cpu, wall = asyncio.run(measure(Path(tmp) / f"{n}-{group}.db", args.database,
                                                case, group, args.jobs))
                print(f"{case:<12} {group:>5} {cpu:>10.1f} {wall:>11.1f}")


if __name__ == "__main__":
    main()
