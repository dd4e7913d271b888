"""What each trigger and index of the jobs table costs the pool, per no-op job (SQLite).

    python bench/store_costs.py [--turns 1500] [--rounds 5] [NAME ...]

The store's part of the pool's work, without the pool: turns of finish(2) + claim(2) in
one batch, as the dispatcher writes them with two slots, on an inline SqliteStore. Each
variant drops one trigger or index (NAME; by default every trigger that fires on a change
of status, and the indexes such a change writes) from a fresh, migrated database and
reports the CPU per job against the untouched schema, the median of `--rounds` runs,
alternated. Dropping one breaks what it serves (events, quotas, dependencies, rate
limits, listings): the figure is its price, not a proposal.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import Ending, NewJob, Outcome
from scholarsource.store.sqlite import SqliteStore

_DEFAULT = ["jobs_state_event", "jobs_live_update", "jobs_release", "jobs_rate_start",
            "jobs_tenant_status", "jobs_expiry", "jobs_finished", "job_events_job",
            "jobs_running"]
_WARMUP = 100


def _kind(db: Path, name: str) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT type FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    if row is None or row[0] not in ("trigger", "index"):
        raise SystemExit(f"{name}: no such trigger or index")
    return str(row[0]).upper()


async def _turns(db: Path, turns: int) -> float:
    """CPU microseconds per job of `turns` finish(2) + claim(2) batches."""
    store = await SqliteStore.open(db, inline=True)
    try:
        await store.submit_many([NewJob("noop", {}, "default", 0, 1)
                                 for _ in range(2 * (turns + _WARMUP) + 2)])
        claims = await store.claim("bench", 2, 30)
        start = 0.0
        for turn in range(turns + _WARMUP):
            if turn == _WARMUP:
                start = time.process_time()
            async with store.batch():
                await store.finish([Outcome(c.id, c.token, Ending.SUCCEEDED, result_json="null")
                                    for c in claims], max_crashes=3)
                claims = await store.claim("bench", 2, 30)
        return (time.process_time() - start) / (2 * turns) * 1e6
    finally:
        await store.close()


def measure(drop: str | None, turns: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        schema.migrate(db)
        if drop is not None:
            with sqlite3.connect(db) as conn:
                conn.execute(f"DROP {_kind(db, drop)} {drop}")
        return asyncio.run(_turns(db, turns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=_DEFAULT)
    parser.add_argument("--turns", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    variants: list[str | None] = [None, *args.names]
    runs: dict[str | None, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            runs[name].append(measure(name, args.turns))
    whole = statistics.median(runs[None])
    print(f"claim + finish, CPU per job (median of {args.rounds}): {whole:.1f} us")
    for name in args.names:
        cost = whole - statistics.median(runs[name])
        print(f"  {name:20s} {cost:+6.1f} us ({cost / whole:+.0%})")


if __name__ == "__main__":
    main()
