"""Claim cost with held-back jobs ahead of the first job that may start.

    python bench/held_ahead.py [--sizes 1000,10000,100000] [--claims 200] [--held paused]
                               [--contested]

N jobs of one queue are submitted first, then jobs of another; the first queue is paused
(`--held paused`) or capped at one running job that never ends (`--held capped`), so the N
held-back jobs stand ahead of the first job that may start. Reports the time per claim of
one job on an inline SqliteStore, with the gate the pool's policy passes (a capped queue in
`skip`); the claimed jobs go back to the queue (untimed) so every claim sees the same jobs.
Since schema V20 a lone tenant's claim passes over a held queue whole (its figure is flat in
N); before, it walked past each held-back job inside its write transaction. With
`--contested` another tenant has a job queued (in the held queue), so each claim is a fair
turn, which still walks them (see README, "Pause and resume").
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from scholarsource.store.base import Claim, Gate, NewJob
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

_BATCH = 50_000
_OPEN = 2_000


async def per_claim(path: Path, n: int, claims: int, held: str, contested: bool) -> float:
    """Seconds per claim of one job with `n` held-back jobs ahead."""
    migrate(path)
    store = await SqliteStore.open(path, inline=True)
    try:
        for start in range(0, n, _BATCH):
            await store.submit_many([NewJob("noop", {}, "held", 0, 1)
                                     for _ in range(min(_BATCH, n - start))])
        await store.submit_many([NewJob("noop", {}, "open", 0, 1) for _ in range(_OPEN)]
                                + [NewJob("noop", {}, "held", 0, 1, tenant="other")] * contested)
        gate = Gate()
        if held == "paused":
            await store.pause_queue("held", True)
        else:  # one of its jobs runs and never ends: the queue is at its cap
            await store.claim("bench", 1, 3600.0, gate=Gate(only=("held",)))
            gate = Gate(skip=("held",))
        taken: list[Claim] = []
        began = time.perf_counter()
        for _ in range(claims):
            got = await store.claim("bench", 1, 30.0, gate=gate)
            assert got and got[0].queue == "open", got
            taken += got
        seconds = (time.perf_counter() - began) / claims
        await store.requeue([(c.id, c.token) for c in taken], "bench: done")
        return seconds
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--held", choices=("paused", "capped"), default="paused")
    parser.add_argument("--contested", action="store_true",
                        help="another tenant has a job queued: each claim is a fair turn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(size) for size in args.sizes.split(",")):
            seconds = asyncio.run(per_claim(Path(tmp) / f"held-{n}.db", n, args.claims,
                                            args.held, args.contested))
            print(f"{n:>9,} {args.held} jobs ahead{', contested' * args.contested}: "
                  f"{seconds * 1e3:8.2f} ms a claim")


if __name__ == "__main__":
    main()
