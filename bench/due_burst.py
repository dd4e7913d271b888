"""Delayed jobs all due at once: how long until every one has started?

A fresh database (schema.migrate) gets N no-op jobs through `SqliteStore.submit_many`, all
with the same `run_at` a few seconds ahead, so they wait as `scheduled`. A fake pool loop
then does what the dispatcher does, on the store's inline driver as the pool uses it: sleep
until the due time `promote()` returns, promote (one statement queues all N), then claim up
to `--slots` jobs and finish them at once (no-op jobs), until none is left. The figures come
from the rows: each job's `started_at` against its `run_at`. Slots here cost nothing, so
this is the store's side of the burst: promote plus claim + finish, not task run time.

    .venv/bin/python bench/due_burst.py --jobs 10000 --slots 16 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from scholarsource.percentiles import percentile
from scholarsource.store.base import Ending, NewJob, Outcome
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

_LEAD = 2.0  # seconds between the submit and the due time: the submit must end before it


async def _burst(path: Path, jobs: int, slots: int) -> dict[str, float]:
    store = await SqliteStore.open(path, inline=True)
    try:
        due = time.time() + _LEAD
        job = dataclasses.replace(NewJob("noop", {}, "default", 0, 1), run_at=due)
        began = time.perf_counter()
        await store.submit_many([job] * jobs)
        submit_seconds = time.perf_counter() - began
        if time.time() >= due:
            raise SystemExit(f"the submit took {submit_seconds:.1f}s, past the due time; "
                             f"raise _LEAD")
        started = promote_seconds = 0.0
        next_due = await store.promote()  # as the pool learns it from a submit's hint
        while started < jobs:
            if next_due is not None:
                await asyncio.sleep(max(next_due - time.time(), 0))
                began = time.perf_counter()
                next_due = await store.promote()
                promote_seconds += time.perf_counter() - began
            claims = await store.claim("bench", slots, 30.0)
            await store.finish([Outcome(c.id, c.token, Ending.SUCCEEDED) for c in claims],
                               max_crashes=3)
            started += len(claims)
        return {"due": due, "submit_seconds": submit_seconds,
                "promote_seconds": promote_seconds}
    finally:
        await store.close()


def measure(workdir: Path, jobs: int, slots: int) -> dict[str, Any]:
    """Run one burst of `jobs` due at the same moment; figures from the rows."""
    path = workdir / "due.db"
    migrate(path)
    timing = asyncio.run(_burst(path, jobs, slots))
    conn = sqlite3.connect(path)
    try:
        lags = sorted(started - timing["due"] for (started,) in
                      conn.execute("SELECT started_at FROM jobs"))
    finally:
        conn.close()
    if min(lags) < 0:
        raise SystemExit("a job started before its run_at")
    return {"jobs": jobs, "slots": slots,
            "submit_seconds": round(timing["submit_seconds"], 3),
            "promote_seconds": round(timing["promote_seconds"], 4),
            "first_start_after_due": round(lags[0], 4),
            "start_after_due_ms": percentile(lags),
            "starts_per_s": round(jobs / max(lags[-1] - lags[0], 1e-9), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=16, help="jobs claimed per turn")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), args.jobs, args.slots)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
