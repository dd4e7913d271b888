"""What an exact server-wide max_queued costs a submit on PostgreSQL, without HTTP.

Times `PostgresStore.admit` of lone plain jobs (the API's quick path) in three cases, in
the same run against the same database (`--database`, a postgresql:// URL; it is migrated
and its jobs are deleted before each case):
- no cap:   `max_queued` None: the guarded INSERT alone, one statement, no lock: what every
            capped submit cost before the cap was made exact (it then overshot under load);
- far:      far from the cap: the server's quota lock shared and the INSERT, one pipelined
            transaction (submits still run side by side);
- near:     within the margin of the cap (max_connections x 256 jobs): the quota
            transaction with the lock exclusive, one submit at a time server-wide.
Each case runs `--jobs` submits one after another (CPU is this process's, wall includes the
server's), then the same number from 4 stores (as 4 API workers) with 8 submits in flight
each (jobs/s). The server shares the machine's cores with this client unless it runs
elsewhere: say which, with the figures.

    .venv/bin/python bench/pg_guarded_submit.py --database postgresql://... [--jobs 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from scholarsource.quotas import Ask, QuotaPolicy
from scholarsource.store.base import NewJob
from scholarsource.store.postgres import PostgresStore
from scholarsource.store.postgres import schema as pg_schema

JOB = NewJob("noop", {}, "default", 0, 1)
STORES, IN_FLIGHT = 4, 8


async def margin(url: str) -> int:
    """The jobs a shared holder of the quota lock leaves room for (sql.QUOTA_MARGIN)."""
    store = await PostgresStore.open(url, role="cli")
    try:
        (connections,) = await store._db.one("SELECT current_setting('max_connections')::int")
        return int(connections) * 256
    finally:
        await store.close()


async def serial(url: str, policy: QuotaPolicy, jobs: int) -> tuple[float, float]:
    """CPU and wall microseconds per lone submit, one after another."""
    store = await PostgresStore.open(url, role="api")
    try:
        await store._db.fetchall("TRUNCATE jobs, job_events, tenant_live CASCADE")
        began, wall = time.process_time(), time.perf_counter()
        for _ in range(jobs):
            await store.admit([(Ask("default"), [JOB])], policy)
        return ((time.process_time() - began) / jobs * 1e6,
                (time.perf_counter() - wall) / jobs * 1e6)
    finally:
        await store.close()


async def concurrent(url: str, policy: QuotaPolicy, jobs: int) -> float:
    """Jobs per second from STORES stores with IN_FLIGHT submits in flight each."""
    stores = [await PostgresStore.open(url, role="api") for _ in range(STORES)]
    try:
        await stores[0]._db.fetchall("TRUNCATE jobs, job_events, tenant_live CASCADE")
        per = jobs // (STORES * IN_FLIGHT)

        async def lane(store: PostgresStore) -> None:
            for _ in range(per):
                await store.admit([(Ask("default"), [JOB])], policy)

        wall = time.perf_counter()
        await asyncio.gather(*(lane(s) for s in stores for _ in range(IN_FLIGHT)))
        return per * STORES * IN_FLIGHT / (time.perf_counter() - wall)
    finally:
        for store in stores:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="a PostgreSQL URL")
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    pg_schema.migrate(args.database)
    room = asyncio.run(margin(args.database))
    if room <= args.jobs:
        parser.error(f"--jobs must stay under the margin ({room}) for the near case")
    cases = {"no cap": QuotaPolicy(max_queued=None),
             "far": QuotaPolicy(max_queued=10**9),
             "near": QuotaPolicy(max_queued=room)}  # never reached: room > --jobs
    print(f"{'case':<8} {'CPU us/job':>10} {'wall us/job':>11} {'jobs/s x32':>10}")
    for _ in range(args.rounds):
        for name, policy in cases.items():
            cpu, wall = asyncio.run(serial(args.database, policy, args.jobs))
            rate = asyncio.run(concurrent(args.database, policy, args.jobs))
            print(f"{name:<8} {cpu:>10.1f} {wall:>11.1f} {rate:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
