"""Claim rate under the claim policy: does it stay flat as the queue grows?

N queued no-op jobs are spread round-robin over 10 queues. Five queues are capped at one
running job and each holds one (never finished), and one queue is paused, so six jobs in ten
may not start: every claim passes over them (since schema V20 a held queue as a whole,
through jobs_queued; before, job by job inside the claim's walk of jobs_fair). Then
`Policy.claim` (the pool's gate + `SqliteStore.claim`, inline as the dispatcher runs it)
runs a fixed number of times for one free slot, and the jobs it claimed go back to the
queue (untimed), so every size and round walks past the same held-back jobs: each claim
passes over the capped and paused jobs ahead of the first that may start, a cost that grows
with the jobs already taken from the head, not with N. With `--rounds R` the sizes are timed
in turn R times (the box's load then falls on all alike) and the medians compared. With the
policy inside one index walk the rate should not depend on N.

With `--scheduled F`, that fraction of the jobs (every queue alike) is `scheduled` an hour to
a day ahead: the claim must not even walk them (they stay out of jobs_fair until due), and
the run checks that none of them was claimed or promoted meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scholarsource.bench.machine import machine
from scholarsource.limits import QueueLimits
from scholarsource.pool.admission import Admission
from scholarsource.pool.memory import Expectations
from scholarsource.pool.policy import Policy
from scholarsource.store.base import Claim, Gate, NewJob
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

_BATCH = 50_000
_WARMUP = 50
_HOUR, _DAY = 3600.0, 86400.0
QUEUES = [f"q{i}" for i in range(10)]
CAPPED = QUEUES[:5]
PAUSED = QUEUES[5]


class _Roomy(Admission):
    """Admission with memory to spare: the bench measures the claim, not /proc reads."""

    def __init__(self) -> None:
        super().__init__(0, Expectations(1), slots=None)

    async def admit(self, store: Any, n: int, gate: Any = None, claimed: int = 0) -> None:
        return None


def _new(i: int, scheduled: float, now: float) -> NewJob:
    """Job `i`: round-robin over the queues; every job whose turn comes at the `scheduled`
    rate (the same share in each queue) is due between an hour and a day from `now`."""
    queue = QUEUES[i % len(QUEUES)]
    later = int((i // len(QUEUES) + 1) * scheduled) > int(i // len(QUEUES) * scheduled)
    run_at = now + _HOUR + (i * 7919 % 1000) / 1000 * (_DAY - _HOUR) if later else None
    return NewJob("noop", {}, queue, 0, 1, run_at=run_at)


async def _fill(store: SqliteStore, n: int, scheduled: float) -> None:
    now = time.time()
    for start in range(0, n, _BATCH):
        await store.submit_many([_new(i, scheduled, now)
                                 for i in range(start, min(n, start + _BATCH))])


def startable(n: int, scheduled: float) -> int:
    """How many of `n` jobs may start: due, in a queue neither capped nor paused."""
    free = [q for q in QUEUES if q not in CAPPED and q != PAUSED]
    return sum(1 for i in range(n) if QUEUES[i % len(QUEUES)] in free
               and _new(i, scheduled, 0.0).run_at is None)


@dataclass
class Queue:
    """One filled database: its store, the policy, the claims held at the caps, and how
    many jobs that may start it has left."""

    n: int
    store: SqliteStore
    policy: Policy
    held: list[Claim]
    scheduled: int
    fill_seconds: float


async def prepare(path: Path, n: int, scheduled: float) -> Queue:
    """Fill `n` jobs (`scheduled` of them due later), hold the capped queues at their cap
    and pause one."""
    migrate(path)
    store = await SqliteStore.open(path, inline=True)
    began = time.perf_counter()
    await _fill(store, n, scheduled)
    filling = time.perf_counter() - began
    waiting = (await store.counts()).get("scheduled", 0)
    policy = Policy({q: QueueLimits(max_running=1) for q in CAPPED}, _Roomy(),
                    rate_limited=False)
    held: list[Claim] = []
    for queue in CAPPED:  # one running job each: the capped queues are at their cap
        held += await store.claim("bench", 1, 3600.0, gate=Gate(only=(queue,)))
    await store.pause_queue(PAUSED, True)
    return Queue(n, store, policy, held, waiting, filling)


async def time_claims(queue: Queue, count: int) -> float:
    """Claims per second of `count` claims for one free slot, after a warm-up; then every
    job claimed goes back to the queue (untimed), so each round walks the same jobs."""
    claimed: list[Claim] = []
    began = time.perf_counter()
    for i in range(_WARMUP + count):
        if i == _WARMUP:
            began = time.perf_counter()
        claims = await queue.policy.claim(queue.store, "bench", 1, 30.0, queue.held)
        assert claims, "the queue ran out of jobs that may start"
        assert claims[0].queue not in CAPPED and claims[0].queue != PAUSED, claims
        claimed += claims
    rate = count / (time.perf_counter() - began)
    await queue.store.requeue([(c.id, c.token) for c in claimed], "bench: next round")
    return rate


async def measure(tmp: Path, sizes: list[int], count: int, scheduled: float,
                  rounds: int) -> list[dict[str, Any]]:
    """Each round times `count` claims at every size in turn, so that the box's changing
    load falls on all sizes alike. Every scheduled job must still be waiting after."""
    queues: list[Queue] = []
    results: list[dict[str, Any]] = []
    try:
        for i, n in enumerate(sizes):
            queues.append(await prepare(tmp / f"policy-{i}-{n}.db", n, scheduled))
        for r in range(rounds):
            for queue in queues:
                rate = await time_claims(queue, count)
                results.append({"round": r, "queued": queue.n, "scheduled": queue.scheduled,
                                "claims": count, "claims_per_s": round(rate, 1),
                                "fill_seconds": round(queue.fill_seconds, 1),
                                "running_held": Counter(c.queue for c in queue.held)})
                print(f"round {r}: {queue.n:>9,} jobs over 10 queues (5 capped and full, 1 "
                      f"paused), {queue.scheduled:,} scheduled: {rate:>8,.0f} claims/s")
        for queue in queues:
            left = (await queue.store.counts()).get("scheduled", 0)
            assert left == queue.scheduled, f"scheduled jobs: {queue.scheduled} -> {left}"
    finally:
        for queue in queues:
            await queue.store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="1000,1000000", help="queue sizes, comma-separated")
    parser.add_argument("--scheduled", type=float, default=0.0,
                        help="fraction of the jobs scheduled an hour to a day ahead (0-1)")
    parser.add_argument("--claims", type=int,
                        help="timed claims per size and round (default: up to 250, as many "
                             "as the smallest size has jobs that may start, after the "
                             "warm-up)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every size this many times, in turn")
    parser.add_argument("--json", dest="out", help="also write the results to this file")
    args = parser.parse_args()
    sizes = [int(v) for v in args.queued.split(",")]
    room = min(startable(n, args.scheduled) for n in sizes) - _WARMUP
    claims = args.claims or min(250, room)
    if claims < 1 or claims > room:
        parser.error(f"the smallest size has {room} jobs that may start after the warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(Path(tmp), sizes, claims, args.scheduled, args.rounds))
    by_size = {n: statistics.median(r["claims_per_s"] for r in results if r["queued"] == n)
               for n in sizes}
    for n, rate in by_size.items():
        print(f"{n:>9,} jobs: median {rate:,.0f} claims/s over {args.rounds} round(s)")
    print(f"median slowest / fastest: {min(by_size.values()) / max(by_size.values()):.3f}")
    if args.out:
        report = {"command": " ".join(["python", *sys.argv]), "machine": machine(),
                  "median_claims_per_s": by_size,
                  "median_slowest_over_fastest": round(min(by_size.values())
                                                       / max(by_size.values()), 3),
                  "results": results}
        Path(args.out).write_text(json.dumps(report, indent=2, default=dict) + "\n")


if __name__ == "__main__":
    main()
