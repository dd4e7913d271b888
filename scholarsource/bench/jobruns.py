"""The job scenarios: submit jobs over HTTP, then read when each was created, started and
finished from the server's own timestamps (time.time() on the server's box).

- e2e-noop   N no-op jobs as fast as the clients can submit them, until all are done:
             the queue's and the dispatcher's own overhead (jobs/s).
- e2e-sleep  sleep jobs of 10, 100 and 400 ms in turn: I/O-bound work, so the slots'
             concurrency is the limit; slot usage = time spent in jobs / (slots x elapsed).
- e2e-cpu    jobs that each burn one core for 250 ms: efficiency = ideal time
             (jobs x seconds / slots) / measured time (first created to last finished).
- pickup     an idle server, one no-op job at a time: submit-to-start latency.

Each waits until the server has nothing queued or running before it starts (so one
scenario's leftovers do not slow the next) and after it submitted (to know when all are
done). The HTTP polling only decides when to stop waiting; it never enters the numbers.
Wait time = started_at - created_at; run time = finished_at - started_at.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from scholarsource.bench.context import Context, ServerStats
from scholarsource.bench.flows import Op
from scholarsource.bench.loadgen import LoadResult
from scholarsource.percentiles import percentile

NOOP = {"task": "noop"}
SLEEPS = (0.01, 0.1, 0.4)
CPU_SECONDS = 0.25
DEFAULT_JOBS = {"e2e-noop": 2000, "e2e-sleep": 30, "e2e-cpu": 16, "pickup": 100,
                "e2e-queues": 300, "e2e-scheduled": 300, "e2e-fair": 5000}
_PAGE = 1000


def wait_idle(client: httpx.Client, timeout: float, interval: float = 0.05,
              states: Sequence[str] = ("queued", "running")) -> None:
    """Poll until no job is in `states`; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = any(client.get("/api/jobs", params={"status": s, "limit": 1}).json()["jobs"]
                   for s in states)
        if not busy:
            return
        time.sleep(interval)
    raise TimeoutError(f"jobs still {' or '.join(states)} after {timeout:.0f}s: the e2e "
                       "scenarios need a server with no other traffic")


def fetch(client: httpx.Client, ids: set[str]) -> list[dict[str, Any]]:
    """The jobs named by `ids`, from the listing (newest first, so ours come first)."""
    found: list[dict[str, Any]] = []
    cursor = None
    while len(found) < len(ids):
        params: dict[str, Any] = {"limit": _PAGE, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/jobs", params=params).raise_for_status().json()
        found += [job for job in page["jobs"] if job["id"] in ids]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return found


def slot_count(client: httpx.Client) -> int:
    """How many job slots the server has, from /api/health."""
    pool = client.get("/api/health").json().get("pool") or {}
    return int(pool.get("slots") or 1)


def job_figures(jobs: list[dict[str, Any]], slots: int, work: float) -> dict[str, Any]:
    """jobs/s, wait and run times, and (for `work` seconds of work in all) efficiency."""
    done = [j for j in jobs if j["final"] and j["finished_at"] is not None]
    ran = [j for j in done if j["started_at"] is not None]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    if not done:
        return {"count": len(jobs), "statuses": counts}
    first = min(j["created_at"] for j in jobs)
    measured = max(max(j["finished_at"] for j in done) - first, 1e-9)
    run = [j["finished_at"] - j["started_at"] for j in ran]
    figures: dict[str, Any] = {
        "count": len(jobs), "statuses": counts, "seconds": round(measured, 3),
        "jobs_per_s": round(counts.get("succeeded", 0) / measured, 1),
        "wait_ms": percentile(j["started_at"] - j["created_at"] for j in ran),
        "run_ms": percentile(run),
        "turnaround_ms": percentile(j["finished_at"] - j["created_at"] for j in done),
        "slots": slots, "slot_usage": round(sum(run) / (slots * measured), 3),
    }
    if work:
        ideal = work / slots
        figures.update(ideal_seconds=round(ideal, 3), efficiency=round(ideal / measured, 3))
    return figures


@dataclass
class Submitted:
    """Jobs a scenario submitted and saw to the end: the load that sent them, the jobs as
    the server recorded them, its slots, and its CPU meanwhile."""

    load: LoadResult
    jobs: list[dict[str, Any]]
    slots: int
    stats: ServerStats

    def result(self, figures: dict[str, Any]) -> dict[str, Any]:
        """The submit load's figures, the jobs' `figures`, and how many went missing."""
        result = self.load.summary()
        result.update(unit="jobs/s", throughput_per_s=figures.get("jobs_per_s", 0.0),
                      jobs=figures, accepted=len(self.load.ids),
                      lost=len(self.load.ids) - len(self.jobs),
                      server=self.stats.result(sum(self.load.all_statuses.values())))
        return result


def submit_and_wait(ctx: Context, name: str, bodies: Sequence[dict[str, Any]],
                    work: float) -> Submitted:
    """Submit `ctx`'s job count of `bodies` (in turn) over HTTP and wait until all are
    done; `work`: seconds of work in all, which bounds the wait."""
    count = ctx.settings.jobs or DEFAULT_JOBS[name]
    with httpx.Client(base_url=ctx.target.url, timeout=30) as client:
        slots = slot_count(client)
        wait_idle(client, timeout=300)
        with ctx.server_stats() as stats:
            load = ctx.load(name, ctx.spec(Op(bodies=tuple(bodies), collect_ids=True),
                                           total=count))
            ctx.progress.start(f"{name}: running")
            try:
                wait_idle(client, timeout=max(120.0, 3 * work / slots + 60))
            finally:
                ctx.progress.finish()
        jobs = fetch(client, set(load.ids))
    return Submitted(load, jobs, slots, stats)


def run_jobs(ctx: Context, name: str, bodies: Sequence[dict[str, Any]],
             seconds_each: Sequence[float]) -> dict[str, Any]:
    """Submit the jobs over HTTP, wait until all are done, and time them."""
    count = ctx.settings.jobs or DEFAULT_JOBS[name]
    work = sum(seconds_each[i % len(seconds_each)] for i in range(count))
    done = submit_and_wait(ctx, name, bodies, work)
    return done.result(job_figures(done.jobs, done.slots, work))


def e2e_noop(ctx: Context) -> dict[str, Any]:
    """No-op jobs, submit to all done."""
    return run_jobs(ctx, "e2e-noop", [NOOP], [0.0])


def e2e_sleep(ctx: Context) -> dict[str, Any]:
    """Sleep jobs of 10, 100 and 400 ms in turn."""
    bodies = [{"task": "sleep", "params": {"seconds": s}} for s in SLEEPS]
    return run_jobs(ctx, "e2e-sleep", bodies, SLEEPS)


def e2e_cpu(ctx: Context) -> dict[str, Any]:
    """Jobs that each burn one core for CPU_SECONDS."""
    return run_jobs(ctx, "e2e-cpu", [{"task": "cpu", "params": {"seconds": CPU_SECONDS}}],
                    [CPU_SECONDS])


def _one(client: httpx.Client, first_wait: float) -> tuple[dict[str, Any], float]:
    """Submit one no-op, let the server pick it up undisturbed, poll until it is done;
    the job and the submit's latency (s)."""
    sent = time.monotonic()
    job: dict[str, Any] = client.post("/api/jobs", json=NOOP).raise_for_status().json()
    latency = time.monotonic() - sent
    time.sleep(first_wait)
    deadline = time.monotonic() + 30
    while not job["final"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job['id']} still {job['status']} after 30s")
        time.sleep(0.005)
        job = client.get(f"/api/jobs/{job['id']}").raise_for_status().json()
    return job, latency


def pickup(ctx: Context, first_wait: float = 0.02) -> dict[str, Any]:
    """One no-op at a time on an idle server: started_at - created_at per job."""
    count = ctx.settings.jobs or DEFAULT_JOBS["pickup"]
    jobs, latencies = [], []
    with httpx.Client(base_url=ctx.target.url, timeout=30) as client:
        slots = slot_count(client)
        wait_idle(client, timeout=300)
        ctx.progress.start("pickup", total=count)
        try:
            with ctx.server_stats() as stats:
                began = time.monotonic()
                for i in range(count):
                    job, latency = _one(client, first_wait)
                    jobs.append(job)
                    latencies.append(latency)
                    ctx.progress.update(i + 1)
                elapsed = time.monotonic() - began
        finally:
            ctx.progress.finish()
    figures = job_figures(jobs, slots, 0.0)
    return {"unit": "jobs/s", "throughput_per_s": round(count / elapsed, 1),
            "seconds": round(elapsed, 3), "requests": count, "operations": count,
            "latency_ms": percentile(latencies), "errors": {},
            "pickup_ms": figures.get("wait_ms"), "jobs": figures,
            "server": stats.result(count)}
