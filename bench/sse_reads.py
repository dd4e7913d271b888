"""What a tick of event streams costs the API worker, without HTTP: per-stream polling
against one shared reader.

A fresh SQLite database gets N running jobs with a few events each. "per-stream" is what
each stream did every 0.25 s before the reader (api/events.py at d188aa9): `Store.get` and
`Store.events` after its last event, for each of N streams. "reader" is one
`EventReader` read (api/fanout.py): one `Store.watch` statement for all N feeds and the
fan-out of its rows. Both run through aiosqlite, as in an API worker, with nothing new to
deliver (the common case: streams wait for their job). CPU time is the process's (threads
included), so a busy box stretches wall time but not these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from scholarsource.api.fanout import EventReader, Feed
from scholarsource.bench.machine import machine
from scholarsource.store.base import NewJob, Note, Store
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

TICKS_PER_SECOND = 4  # the poll interval both ways: 0.25 s


async def _fill(path: Path, jobs: int) -> list[str]:
    migrate(path)
    store = await SqliteStore.open(path, inline=True)
    try:
        await store.submit_many([NewJob("noop", {}, "default", 0, 1)] * jobs)
        claims = await store.claim("bench", jobs, 3600)
        await store.note([Note(c.id, c.token, "log", {"message": f"line {i}"})
                          for c in claims for i in range(3)])
        return [c.id for c in claims]
    finally:
        await store.close()


async def _per_stream(store: Store, ids: list[str], afters: dict[str, int]) -> None:
    for job_id in ids:
        await store.get("default", job_id)
        await store.events("default", job_id, afters[job_id])


async def _measure(path: Path, ids: list[str], rounds: int) -> dict[str, Any]:
    store = await SqliteStore.open(path)  # aiosqlite, as an API worker opens it
    try:
        afters = {job_id: (await store.events("default", job_id))[-1].seq for job_id in ids}
        reader = EventReader(store, interval=3600, capacity=1000)
        feeds = [Feed("default", job_id, afters[job_id], 1000, lambda: None)
                 for job_id in ids]
        reader._feeds.update(feeds)  # held open; their reads are driven by hand below
        out: dict[str, Any] = {}
        for name, tick in (("per_stream", lambda: _per_stream(store, ids, afters)),
                           ("reader", reader._read_once)):
            await tick()  # warm
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(rounds):
                await tick()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[name] = {"cpu_ms_per_tick": round(cpu / rounds * 1e3, 3),
                         "wall_ms_per_tick": round(wall / rounds * 1e3, 3),
                         "cores_at_4_ticks_per_s": round(cpu / rounds * TICKS_PER_SECOND, 3),
                         "statements_per_tick": 2 * len(ids) if name == "per_stream" else 1}
        assert all(not feed.closed for feed in feeds)  # nothing was due: all still open
        return out
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="100,1000", help="stream counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "rounds": args.rounds, "runs": {}}
    for count in (int(n) for n in args.streams.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "q.db"
            ids = asyncio.run(_fill(path, count))
            run = asyncio.run(_measure(path, ids, args.rounds))
        results["runs"][count] = run
        print(f"{count:>6} streams: per-stream polling {run['per_stream']['cpu_ms_per_tick']} "
              f"ms CPU a tick ({run['per_stream']['cores_at_4_ticks_per_s']} cores at 4 "
              f"ticks/s); one reader {run['reader']['cpu_ms_per_tick']} ms "
              f"({run['reader']['cores_at_4_ticks_per_s']} cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
