"""Claim rate under the claim policy: does it stay flat as the queue grows?

N queued no-op jobs are spread round-robin over 10 queues. Five queues are capped at one
running job and each holds one (never finished), and one queue is paused, so six jobs in ten
may not start: every claim passes over them inside the claim's walk of jobs_claim. Then
`Policy.claim` (the pool's gate + `SqliteStore.claim`, inline as the dispatcher runs it) and
`finish` run a fixed number of times for one free slot. With the policy inside one index
walk the rate should not depend on N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from scholarsource.limits import QueueLimits
from scholarsource.pool.admission import Admission
from scholarsource.pool.memory import Expectations
from scholarsource.pool.policy import Policy
from scholarsource.store.base import Claim, Ending, Gate, NewJob, Outcome
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

_BATCH = 50_000
_WARMUP = 100
QUEUES = [f"q{i}" for i in range(10)]
CAPPED = QUEUES[:5]
PAUSED = QUEUES[5]


class _Roomy(Admission):
    """Admission with memory to spare: the bench measures the claim, not /proc reads."""

    def __init__(self) -> None:
        super().__init__(0, Expectations(1), slots=None)

    async def admit(self, store: Any, n: int, gate: Any = None) -> None:
        return None


async def _fill(store: SqliteStore, n: int) -> None:
    jobs = [NewJob("noop", {}, queue, 0, 1) for queue in QUEUES]
    for start in range(0, n, _BATCH):
        size = min(_BATCH, n - start)
        await store.submit_many((jobs * (size // len(jobs) + 1))[:size])


async def measure(path: Path, n: int, count: int) -> dict[str, Any]:
    """Fill `n` jobs, hold the capped queues at their cap, then time `count` claims."""
    migrate(path)
    store = await SqliteStore.open(path, inline=True)
    try:
        began = time.perf_counter()
        await _fill(store, n)
        filling = time.perf_counter() - began
        policy = Policy({q: QueueLimits(max_running=1) for q in CAPPED}, _Roomy(),
                        rate_limited=False)
        held: list[Claim] = []
        for queue in CAPPED:  # one running job each: the capped queues are at their cap
            held += await store.claim("bench", 1, 3600.0, gate=Gate(only=(queue,)))
        await store.pause_queue(PAUSED, True)
        done, began = 0, time.perf_counter()
        for i in range(_WARMUP + count):
            if i == _WARMUP:
                began = time.perf_counter()
            claims = await policy.claim(store, "bench", 1, 30.0, held)
            assert claims, "the queue ran out of jobs that may start: lower --claims"
            assert claims[0].queue not in CAPPED and claims[0].queue != PAUSED, claims
            await store.finish([Outcome(claims[0].id, claims[0].token, Ending.SUCCEEDED)],
                               max_crashes=3)
            done += i >= _WARMUP
        elapsed = time.perf_counter() - began
        return {"queued": n, "claims": done, "claims_per_s": round(done / elapsed, 1),
                "fill_seconds": round(filling, 1), "running_held": Counter(
                    c.queue for c in held)}
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="1000,1000000", help="queue sizes, comma-separated")
    # At most 250: 1,000 jobs hold 400 that may start, 100 of them for the warm-up.
    parser.add_argument("--claims", type=int, default=250)
    parser.add_argument("--json", dest="out", help="also write the results to this file")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.queued.split(",")):
            r = asyncio.run(measure(Path(tmp) / f"policy-{n}.db", n, args.claims))
            results.append(r)
            print(f"{n:>9,} queued over 10 queues (5 capped and full, 1 paused): "
                  f"{r['claims_per_s']:>8,.0f} claim+finish/s inline "
                  f"(filled in {r['fill_seconds']} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=dict) + "\n")


if __name__ == "__main__":
    main()
