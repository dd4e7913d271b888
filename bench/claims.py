"""Claim rate without HTTP: does claim + finish stay flat as the queue grows?

A fresh database (schema.migrate) is filled with N queued no-op jobs through
`SqliteStore.submit_many` in large batches, then `SqliteStore.claim(owner, 1, ...)` followed by
`finish([Outcome(SUCCEEDED)])` runs a fixed number of times, exactly as the dispatcher would
for one slot. With an index that matches the claim's ORDER BY the rate should not depend on
N; a temp B-tree in the claim's query plan would make it sort the whole queue every time.
The loop runs on both of the store's drivers: aiosqlite (as the API uses it) and inline on
the calling thread (as the pool's dispatcher uses it), which separates the SQL's own cost
from aiosqlite's thread hand-off per statement.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from scholarsource.store.base import Ending, NewJob, Outcome, Store
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import CLAIM, CLAIM_ORDER, SqliteStore

_BATCH = 50_000
_WARMUP = 100


def fill(path: Path, n: int) -> float:
    """Create the database and submit `n` queued no-op jobs through the store (random ids,
    as served); returns the seconds it took."""
    began = time.perf_counter()
    migrate(path)

    async def submit() -> None:
        store = await SqliteStore.open(path, inline=True)
        try:
            job = NewJob("noop", {}, "default", 0, 1)
            for start in range(0, n, _BATCH):
                await store.submit_many([job] * min(_BATCH, n - start))
        finally:
            await store.close()

    asyncio.run(submit())
    return time.perf_counter() - began


def query_plans(path: Path) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the claim's ordering subquery and of the whole claim."""
    conn = sqlite3.connect(path)
    try:
        # The plan does not depend on the values, so NULL stands in for every parameter.
        args = dict.fromkeys(("owner", "lease_until", "now", "n", "skip", "only", "held"))
        return {name: [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
                for name, sql in (("claim_order", CLAIM_ORDER), ("claim", CLAIM))}
    finally:
        conn.close()


async def _open(path: Path, inline: bool) -> SqliteStore:
    return await SqliteStore.open(path, inline=inline)


async def claim_pairs(store: Store, count: int) -> tuple[int, float]:
    """claim(1) + finish, as the dispatcher does for one slot, `count` times after a warm-up
    (or until the queue is empty); returns (pairs, seconds)."""
    done, began = 0, time.perf_counter()
    for i in range(_WARMUP + count):
        if i == _WARMUP:
            began = time.perf_counter()
        claims = await store.claim("bench", 1, 30.0)
        if not claims:
            break
        await store.finish([Outcome(claims[0].id, claims[0].token, Ending.SUCCEEDED)],
                           max_crashes=3)
        done += i >= _WARMUP
    return done, time.perf_counter() - began


async def _claim_loop(path: Path, count: int, inline: bool) -> tuple[int, float]:
    store = await _open(path, inline)
    try:
        return await claim_pairs(store, count)
    finally:
        await store.close()


def _remove(path: Path) -> None:
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        Path(name).unlink(missing_ok=True)


def _rate(workdir: Path, n: int, count: int, inline: bool) -> tuple[int, float, float]:
    """Run `loop` until `count` pairs are timed, refilling a fresh queue of `n` whenever one
    runs out (only a small queue does); returns (pairs, seconds, fill seconds)."""
    path = workdir / f"claims-{n}.db"
    done, elapsed, filling = 0, 0.0, 0.0
    while done < count:
        _remove(path)
        filling += fill(path, n)
        got, seconds = asyncio.run(_claim_loop(path, min(count - done, n - _WARMUP), inline))
        done, elapsed = done + got, elapsed + seconds
    _remove(path)
    return done, elapsed, filling


def measure(workdir: Path, n: int, count: int) -> dict[str, Any]:
    """Fill a database with `n` queued jobs and time `count` claim + finish pairs through
    the store, on aiosqlite as served and inline on plain sqlite3."""
    path = workdir / "plan.db"
    fill(path, min(n, 1000))
    plans = query_plans(path)
    _remove(path)
    done, elapsed, filling = _rate(workdir, n, count, inline=False)
    inline_done, inline_elapsed, _ = _rate(workdir, n, count, inline=True)
    return {"queued": n, "claims": done, "seconds": round(elapsed, 3),
            "claims_per_s": round(done / elapsed, 1),
            "inline_claims_per_s": round(inline_done / inline_elapsed, 1),
            "fill_seconds": round(filling, 1), "plan": plans,
            "temp_btree": any("TEMP B-TREE" in line for line in plans["claim_order"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="1000,1000000", help="queue sizes, comma-separated")
    parser.add_argument("--claims", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.queued.split(",")):
            r = measure(Path(tmp), n, args.claims)
            print(f"{n:>9,} queued: {r['claims_per_s']:>8,.0f} claim+finish/s through aiosqlite, "
                  f"{r['inline_claims_per_s']:>8,.0f}/s inline; temp B-tree in plan: "
                  f"{r['temp_btree']}")
        print("claim plan:", " / ".join(r["plan"]["claim_order"]))


if __name__ == "__main__":
    main()
