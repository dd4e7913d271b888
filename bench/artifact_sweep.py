"""The periodic artifacts sweep's cost when nothing is stale: JOBS job directories, each with
the one attempt its succeeded job keeps.

A fresh SQLite database (the pool's inline driver) gets JOBS succeeded jobs, each with one
artifact recorded, and the artifacts directory their files; then, ROUNDS times:
- a whole sweep (`Sweep.run`, as a pool's start runs it): wall time and the process's CPU
  time (the listing runs on a thread: it counts), and its two parts on their own: listing
  the directories (`artifacts.listing`) and the store's answer for all of them at once
  (`kept_attempts`);
- the periodic sweep, `Sweep.step` once per turn as the dispatcher's housekeeping calls it
  every artifacts_sweep_interval (here with the turns back to back): how many steps, and the
  longest, which is how long it holds the dispatcher's loop at most.
Medians over the rounds. With `--stale K`, K more directories of unknown jobs are deleted by
the first round (what a sweep with work to do costs on top).

    python bench/artifact_sweep.py [--jobs 10000] [--rounds 5] [--stale 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scholarsource import artifacts
from scholarsource.pool.sweep import Sweep
from scholarsource.store.base import Artifact, Ending, NewJob, Outcome
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

_BATCH = 500


async def _fill(store: SqliteStore, root: Path, jobs: int) -> None:
    """`jobs` succeeded jobs, each with one 16-byte artifact on disk and in the store."""
    for start in range(0, jobs, _BATCH):
        await store.submit_many([NewJob("noop", {}, "default", 0, 1)] * min(_BATCH,
                                                                           jobs - start))
        outcomes = []
        for claim in await store.claim("bench", _BATCH, 60.0):
            directory = artifacts.attempt_dir(root, claim.id, claim.attempt)
            directory.mkdir(parents=True)
            (directory / "out.txt").write_bytes(b"x" * 16)
            made = (Artifact("out.txt", 16, "0" * 64, "text/plain",
                             artifacts.relative_path(claim.id, claim.attempt, "out.txt")),)
            outcomes.append(Outcome(claim.id, claim.token, Ending.SUCCEEDED,
                                    result_json="null", artifacts=made))
        await store.finish(outcomes, max_crashes=3)


async def _rounds(store: SqliteStore, root: Path, rounds: int) -> list[dict[str, float]]:
    timed = []
    for _ in range(rounds):
        sweeper = Sweep(root, 60.0)
        wall, cpu = time.perf_counter(), time.process_time()
        deleted = await sweeper.run(store)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        t0 = time.perf_counter()
        listed = await asyncio.to_thread(artifacts.listing, root)
        t1 = time.perf_counter()
        await store.kept_attempts(list(listed))
        t2 = time.perf_counter()
        # The periodic sweep, a step per turn as the dispatcher runs it (turns back to back
        # here): what each step holds the loop for (the pool's SQLite driver answers on it).
        steps, now, began = [], time.monotonic() + 61, time.perf_counter()
        while not steps or sweeper._left or sweeper._listing is not None:
            s0 = time.perf_counter()
            await sweeper.step(store, now)
            steps.append(time.perf_counter() - s0)
            await asyncio.sleep(0.001)
        timed.append({"wall_ms": wall * 1000, "cpu_ms": cpu * 1000, "deleted": deleted,
                      "listing_ms": (t1 - t0) * 1000, "kept_attempts_ms": (t2 - t1) * 1000,
                      "periodic_steps": len(steps),
                      "periodic_wall_ms": (time.perf_counter() - began) * 1000,
                      "periodic_longest_step_ms": max(steps) * 1000})
    return timed


async def _main(workdir: Path, jobs: int, rounds: int, stale: int) -> dict[str, Any]:
    path, root = workdir / "q.db", workdir / "artifacts"
    migrate(path)
    store = await SqliteStore.open(path, inline=True)
    try:
        began = time.perf_counter()
        await _fill(store, root, jobs)
        filled = time.perf_counter() - began
        for i in range(stale):
            directory = root / f"stale{i:017d}" / "1"
            directory.mkdir(parents=True)
            (directory / "lost.txt").write_bytes(b"x")
        timed = await _rounds(store, root, rounds)
    finally:
        await store.close()
    quiet = timed[1:] if stale else timed  # the first round deleted the stale ones
    return {"jobs": jobs, "stale": stale, "rounds": timed, "fill_s": round(filled, 1),
            "first_round": timed[0],
            "median": {key: round(statistics.median(r[key] for r in quiet), 2)
                       for key in ("wall_ms", "cpu_ms", "listing_ms", "kept_attempts_ms",
                                   "periodic_steps", "periodic_wall_ms",
                                   "periodic_longest_step_ms")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stale", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.stale and args.rounds < 2:
        sys.exit("--stale needs --rounds 2 or more (the first round deletes them)")
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(_main(Path(workdir), args.jobs, args.rounds, args.stale))
    first, median = result["first_round"], result["median"]
    print(f"{args.jobs} job directories, nothing stale: sweep {median['wall_ms']:.1f} ms wall, "
          f"{median['cpu_ms']:.1f} ms CPU (listing {median['listing_ms']:.1f} ms, "
          f"kept_attempts {median['kept_attempts_ms']:.1f} ms); median of "
          f"{len(result['rounds']) - (1 if args.stale else 0)} rounds")
    print(f"periodic, a step per turn: {median['periodic_steps']:.0f} steps, the longest "
          f"{median['periodic_longest_step_ms']:.1f} ms, {median['periodic_wall_ms']:.0f} ms "
          f"from the first to the last (turns back to back)")
    if args.stale:
        print(f"first round, deleting {first['deleted']} stale directories: "
              f"{first['wall_ms']:.1f} ms wall, {first['cpu_ms']:.1f} ms CPU")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
