"""The fair-slots scenario (issue 13): does a small tenant wait behind a big one's backlog?

- e2e-fair   tenant bench-big queues `--jobs` jobs (5,000) of 20 ms, then tenant bench-small
             queues 20. Reports bench-small's wait (started_at - created_at) p50/p99/max,
             which fair slots keep near one job's run time, beside what a first-come queue
             would make it wait: bench-big's backlog, jobs x 20 ms / slots. The jobs go
             straight into the server's store, as jobs of two tenants (no API keys needed),
             so the scenario runs on a server the bench starts. Once bench-small is done,
             bench-big's queued jobs are cancelled: the backlog itself is not the measure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from scholarsource.bench import jobruns
from scholarsource.bench.context import Context
from scholarsource.config import load_config
from scholarsource.percentiles import percentile
from scholarsource.store.base import Job, NewJob, Store, Wake
from scholarsource.store.factory import open_store

BIG, SMALL = "bench-big", "bench-small"
SLEEP = 0.02
SMALL_JOBS = 20
_BATCH = 1000  # bench-big's jobs per submit_many
_POLL = 0.02
# The scenario's own server, with both tenants at the default weight, said out loud.
FAIR_CONFIG = f"""
[tenants.{BIG}]
weight = 1
[tenants.{SMALL}]
weight = 1
"""


def _sleeps(tenant: str, count: int) -> list[NewJob]:
    return [NewJob("sleep", {"seconds": SLEEP}, "default", 0, 1, tenant=tenant)] * count


@dataclass
class _Run:
    """What one run saw: the small tenant's jobs, the backlog still queued when they were
    done, the seconds from the first submit to then, and how long each submit took."""

    small: list[Job]
    backlog_left: int
    seconds: float
    submits: list[float]


async def _submit(store: Store, news: list[NewJob], took: list[float]) -> list[Job]:
    sent = time.monotonic()
    jobs = await store.submit_many(news)
    store.wake(Wake.SUBMITTED)
    took.append(time.monotonic() - sent)
    return jobs


async def _run(store: Store, backlog: int, timeout: float) -> _Run:
    """Queue the backlog, then the small tenant's jobs, and wait for those."""
    began = time.monotonic()
    took: list[float] = []
    for start in range(0, backlog, _BATCH):
        await _submit(store, _sleeps(BIG, min(_BATCH, backlog - start)), took)
    ids = [job.id for job in await _submit(store, _sleeps(SMALL, SMALL_JOBS), took)]
    deadline = time.monotonic() + timeout
    while True:
        jobs = [job for job_id in ids if (job := await store.get(SMALL, job_id))]
        if all(job.status.final for job in jobs):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"e2e-fair: {SMALL}'s jobs were not done after {timeout:.0f}s")
        await asyncio.sleep(_POLL)
    elapsed = time.monotonic() - began
    left = (await store.counts(BIG))["queued"]
    await store.cancel_matching(BIG, status="queued")
    return _Run(jobs, left, elapsed, took)


def e2e_fair(ctx: Context) -> dict[str, Any]:
    """bench-small's wait behind bench-big's backlog."""
    target = ctx.target
    if target.data_dir is None:
        raise RuntimeError("e2e-fair writes jobs of two tenants into the server's store: it "
                           "needs a server the bench starts (not --url)")
    backlog = ctx.settings.jobs or jobruns.DEFAULT_JOBS["e2e-fair"]
    config = load_config(target.config, env={}, overrides={"data_dir": str(target.data_dir)})
    with httpx.Client(base_url=target.url, timeout=30) as client:
        slots = jobruns.slot_count(client)
        jobruns.wait_idle(client, timeout=300)
    fifo = backlog * SLEEP / slots  # what a first-come queue would make bench-small wait

    async def run() -> _Run:
        store = await open_store(config, "cli")
        try:
            return await _run(store, backlog, timeout=fifo * 3 + 60)
        finally:
            await store.close()

    ctx.progress.start(f"e2e-fair: {backlog:,} jobs of {BIG}, then {SMALL_JOBS} of {SMALL}")
    try:
        with ctx.server_stats() as stats:
            seen = asyncio.run(run())
    finally:
        ctx.progress.finish()
    done = [job.to_json() for job in seen.small]
    figures = jobruns.job_figures(done, slots, SMALL_JOBS * SLEEP)
    # requests/latency: the store submits (batches of up to 1,000 jobs), not HTTP requests.
    return {"unit": "jobs/s", "throughput_per_s": figures.get("jobs_per_s", 0.0),
            "seconds": round(seen.seconds, 3), "requests": len(seen.submits),
            "operations": backlog + SMALL_JOBS, "latency_ms": percentile(seen.submits),
            "errors": {}, "jobs": figures, "lost": SMALL_JOBS - len(done),
            "fair": {"small_wait_ms": percentile(j["started_at"] - j["created_at"]
                                                 for j in done if j["started_at"]),
                     "job_run_ms": SLEEP * 1000, "backlog": backlog,
                     "fifo_wait_ms": round(fifo * 1000, 1),
                     "backlog_queued_when_small_done": seen.backlog_left},
            "server": stats.result(backlog + SMALL_JOBS)}
