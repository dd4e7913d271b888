"""Soak: does the database file stay flat while jobs keep flowing and retention prunes them?

Drives the store directly, as the pool would, without HTTP: each step submits a batch of
jobs (`submit_many`), claims them, records a log line for each (an event row beside the two
state events the trigger writes) and finishes them with a small result. Between steps the
pool's own `Pruner` runs when it is due, with the same time budget per turn as in the pool.
Every `--every` seconds it prints the jobs that went through, the jobs the table holds, and
the file's size (the database plus its WAL). A second thread takes SQLite's write lock every
10 ms with its own connection, as an API worker's submit would, and records how long it
waited: pruning must not make writers wait.

    .venv/bin/python bench/retention_soak.py --seconds 240 --retention 60s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from scholarsource.config import Retention, parse_duration
from scholarsource.pool.retention import Pruner
from scholarsource.prune import file_bytes
from scholarsource.store.base import Ending, NewJob, Note, Outcome
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import CHECK_WRITABLE, SqliteStore

_MIB = 1024**2


class WriteProbe(threading.Thread):
    """Takes the write lock every 10 ms on its own connection; records each wait."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.waits, self.stop = db, [], threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None, timeout=30)
        while not self.stop.wait(0.01):
            t0 = time.perf_counter()
            conn.execute(CHECK_WRITABLE)
            self.waits.append(time.perf_counter() - t0)
        conn.close()


def pages(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        return (conn.execute("PRAGMA page_count").fetchone()[0],
                conn.execute("PRAGMA freelist_count").fetchone()[0])
    finally:
        conn.close()


async def soak(db: Path, seconds: float, retention: float, batch: int, every: float,
               prune: bool = True, rate: float = 0) -> dict[str, Any]:
    migrate(db)
    store = await SqliteStore.open(db, inline=True)
    pruner = Pruner(Retention(retention, retention, retention))
    probe = WriteProbe(db)
    probe.start()
    job = NewJob("echo", {"user": 12345, "query": "retention soak " * 4}, "default", 0, 1)
    began = time.monotonic()
    next_report, done, rows, samples = began, 0, 0, []
    longest, pruned = 0.0, 0
    try:
        while (now := time.monotonic()) - began < seconds:
            await store.submit_many([job] * batch)
            claims = await store.claim("soak", batch, 30)
            await store.note([Note(c.id, c.token, "log", {"line": "working"}) for c in claims])
            await store.finish([Outcome(c.id, c.token, Ending.SUCCEEDED,
                                        result_json='{"ok": true, "n": 42}') for c in claims],
                               max_crashes=3)
            done += len(claims)
            if rate:  # hold the flow to `rate` jobs/s; the pruner may use the time left
                await asyncio.sleep(max(0.0, began + done / rate - time.monotonic()))
            if prune and pruner.due(now):
                report = await pruner.run(store)
                longest, pruned = max(longest, report.longest_batch), pruned + report.total
            if now >= next_report:
                next_report = now + every
                rows = (await store.counts())["succeeded"]
                page_count, free = pages(db)
                sample = {"t": round(now - began, 1), "jobs_done": done, "jobs_kept": rows,
                          "pruned": pruned, "file_mib": round(file_bytes(db) / _MIB, 1),
                          "pages": page_count, "free_pages": free}
                samples.append(sample)
                print("  ".join(f"{k} {v}" for k, v in sample.items()), flush=True)
    finally:
        probe.stop.set()
        probe.join()
        await store.close()
    waits = sorted(probe.waits)
    elapsed = time.monotonic() - began
    # Flat: after warm-up (twice the retention, so that pruning has caught up), the file
    # should stop growing while jobs keep going through.
    steady = [s for s in samples if s["t"] >= 2 * retention]
    return {
        "seconds": round(elapsed, 1), "retention_s": retention if prune else None,
        "batch": batch, "rate": rate or None,
        "jobs": done, "jobs_per_s": round(done / elapsed), "pruned": pruned,
        "longest_prune_batch_ms": round(longest * 1000, 2),
        "writer_wait_ms": {"p50": round(statistics.median(waits) * 1000, 3),
                           "p99": round(waits[int(len(waits) * 0.99)] * 1000, 3),
                           "max": round(waits[-1] * 1000, 3), "n": len(waits)},
        "file_mib_after_warmup": steady[0]["file_mib"] if steady else None,
        "file_mib_max_after_warmup": max((s["file_mib"] for s in steady), default=None),
        "file_mib_end": samples[-1]["file_mib"] if samples else None,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--retention", default="60s", help="every final state's age")
    parser.add_argument("--batch", type=int, default=200, help="jobs per submit/claim/finish")
    parser.add_argument("--every", type=float, default=10, help="seconds between lines")
    parser.add_argument("--rate", type=float, default=0,
                        help="jobs/s to hold the flow to (default: as fast as it goes)")
    parser.add_argument("--no-prune", action="store_true",
                        help="the baseline: the same flow, nothing pruned")
    parser.add_argument("--dir", help="where the database goes (default: a temp dir)")
    parser.add_argument("--json", help="write the result to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        result = asyncio.run(soak(Path(tmp) / "soak.db", args.seconds,
                                  parse_duration(args.retention), args.batch, args.every,
                                  not args.no_prune, args.rate))
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
