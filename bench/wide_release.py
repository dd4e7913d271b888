"""What a job waiting for many parents costs each parent's finish, through SqliteStore.

    python bench/wide_release.py [--parents 1000,10000]

Claim + finish of N no-op jobs in batches of 16 (the pool's inline driver), alone and with
one more job that depends on all N (a chord, as ctx.continue_with makes it): each parent's
finish releases one edge, in a trigger that updates the waiting job's row. The gap between
the two rates is that update, which grows with the row (its depends_on lists all N).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import Ending, NewJob, Outcome
from scholarsource.store.sqlite import SqliteStore


def new(after: tuple[str, ...] = ()) -> NewJob:
    return NewJob(task="noop", params={}, queue="default", priority=0, max_attempts=1,
                  depends_on=after)


async def rate(n: int, waiter: bool) -> float:
    """Claim + finish per second of `n` parents, with or without a job waiting for all."""
    with tempfile.TemporaryDirectory(prefix="wide-release-") as work:
        path = Path(work) / "q.db"
        schema.migrate(path)
        store = await SqliteStore.open(path, inline=True)
        try:
            parents = await store.submit_many([new() for _ in range(n)])
            if waiter:
                await store.submit_many([new(tuple(p.id for p in parents))])
            started, done = time.perf_counter(), 0
            while claims := await store.claim("bench", 16, 30):
                await store.finish([Outcome(c.id, c.token, Ending.SUCCEEDED,
                                            result_json="null") for c in claims], 3)
                done += len(claims)
            return done / (time.perf_counter() - started)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parents", default="1000,10000")
    for n in map(int, parser.parse_args().parents.split(",")):
        alone, waited = asyncio.run(rate(n, False)), asyncio.run(rate(n, True))
        extra = (1 / waited - 1 / alone) * 1e6
        print(f"{n:>6} parents: {alone:7.0f}/s alone, {waited:7.0f}/s with a job waiting "
              f"for all: +{extra:.0f} us per parent's finish")


if __name__ == "__main__":
    main()
