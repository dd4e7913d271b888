"""The flow-control scenarios: which queued job may start, and when a delayed one does.

- e2e-queues     jobs over three queues of the server's own config (QUEUES_CONFIG): one capped
                 at one running job, one with a reserved slot, one shared, where a task is
                 rate limited. Reports throughput and each queue's wait, and checks from the
                 jobs' own started/finished times that the cap and the rate limit held: a
                 breach is a `violation`, which the bench reports as a problem.
- e2e-scheduled  jobs submitted with a `delay` of 1-3 s, so they come due spread over a few
                 seconds while the server is otherwise idle: start lateness = started_at -
                 run_at (run_at as the submit answered it), p50/p99/max.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from scholarsource.bench import jobruns
from scholarsource.bench.context import Context
from scholarsource.percentiles import percentile

CAPPED, RESERVED, SHARED = "bench-capped", "bench-reserved", "bench-shared"
MAX_RUNNING = 1
RATE_TASK, RATE_LIMIT, RATE_WINDOW = "echo", 20, 1.0
SLEEP = 0.02  # long enough that two runs of the capped queue at once would overlap
# What e2e-queues needs of the server it runs on, added to the bench's --config: it gets a
# server of its own, so the reserved slot and the rate limit touch no other scenario.
QUEUES_CONFIG = f"""
[queues.{CAPPED}]
max_running = {MAX_RUNNING}
[queues.{RESERVED}]
reserved = 1
[tasks.{RATE_TASK}]
rate_limit = "{RATE_LIMIT}/s"
"""
_SLEEP_JOB = {"task": "sleep", "params": {"seconds": SLEEP}}
QUEUE_MIX = ({**_SLEEP_JOB, "queue": CAPPED}, {**_SLEEP_JOB, "queue": RESERVED},
             {**_SLEEP_JOB, "queue": SHARED}, {**_SLEEP_JOB, "queue": SHARED},
             {"task": RATE_TASK, "params": {"n": 1}, "queue": SHARED})
DELAYS = (1.0, 3.0)  # e2e-scheduled's delays run evenly from the first to the second
_DELAY_STEPS = 50
_ROUNDING = 1e-6  # seconds


def most_running(jobs: Iterable[dict[str, Any]]) -> int:
    """The most of `jobs` that ran at one moment, from their started/finished times (a
    job that finishes at the instant another starts does not overlap it)."""
    edges = sorted(edge for j in jobs if j["started_at"] is not None
                   and j["finished_at"] is not None
                   for edge in ((j["started_at"], 1), (j["finished_at"], -1)))
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def most_starts(starts: Iterable[float], window: float) -> int:
    """The most `starts` in any `window` seconds, as the rate limit counts them (a start
    exactly `window` after another is in the next window; to a µs, as float times differ
    by rounding)."""
    times = sorted(starts)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window - _ROUNDING:
            first += 1
        most = max(most, last - first + 1)
    return most


def violations(jobs: list[dict[str, Any]]) -> list[str]:
    """Where the jobs' own times show the cap or the rate limit was broken."""
    found = []
    running = most_running(j for j in jobs if j["queue"] == CAPPED)
    if running > MAX_RUNNING:
        found.append(f"{running} jobs of queue {CAPPED} ran at once (max_running = "
                     f"{MAX_RUNNING})")
    starts = most_starts((j["started_at"] for j in jobs
                          if j["task"] == RATE_TASK and j["started_at"] is not None),
                         RATE_WINDOW)
    if starts > RATE_LIMIT:
        found.append(f"{starts} jobs of task {RATE_TASK} started within {RATE_WINDOW:g} s "
                     f"(rate_limit = {RATE_LIMIT}/s)")
    return found


def e2e_queues(ctx: Context) -> dict[str, Any]:
    """The mixed-queue load: throughput, each queue's wait, and whether the limits held."""
    count = ctx.settings.jobs or jobruns.DEFAULT_JOBS["e2e-queues"]
    with httpx.Client(base_url=ctx.target.url, timeout=30) as client:
        if jobruns.slot_count(client) < 2:
            raise RuntimeError("e2e-queues reserves a slot: it needs at least 2 (--slots)")
    # The rate-limited jobs bound the wait: they start RATE_LIMIT a second at most.
    work = count * SLEEP + count / len(QUEUE_MIX) / RATE_LIMIT
    done = jobruns.submit_and_wait(ctx, "e2e-queues", QUEUE_MIX, work)
    result = done.result(jobruns.job_figures(done.jobs, done.slots, 0.0))
    result["queues"] = {
        queue: {"count": len(mine), "wait_ms": percentile(
            j["started_at"] - j["created_at"] for j in mine if j["started_at"] is not None)}
        for queue in (CAPPED, RESERVED, SHARED)
        for mine in ([j for j in done.jobs if j["queue"] == queue],)}
    result["limits"] = {
        "capped_most_running": most_running(j for j in done.jobs if j["queue"] == CAPPED),
        "capped_max_running": MAX_RUNNING,
        "rate_most_starts_per_window": most_starts(
            (j["started_at"] for j in done.jobs
             if j["task"] == RATE_TASK and j["started_at"] is not None), RATE_WINDOW),
        "rate_limit": f"{RATE_LIMIT}/{RATE_WINDOW:g}s"}
    result["violations"] = violations(done.jobs)
    return result


def e2e_scheduled(ctx: Context) -> dict[str, Any]:
    """Delayed jobs coming due over a few seconds: how late each starts."""
    count = ctx.settings.jobs or jobruns.DEFAULT_JOBS["e2e-scheduled"]
    first, last = DELAYS
    due: dict[str, float] = {}  # job id -> run_at, as the submit answered it
    latencies = []
    with httpx.Client(base_url=ctx.target.url, timeout=30) as client:
        slots = jobruns.slot_count(client)
        jobruns.wait_idle(client, timeout=300)
        with ctx.server_stats() as stats:
            ctx.progress.start("e2e-scheduled: submitting", total=count)
            try:
                began = time.monotonic()
                for i in range(count):
                    delay = first + (last - first) * (i % _DELAY_STEPS) / _DELAY_STEPS
                    sent = time.monotonic()
                    answer = client.post("/api/jobs", json={"task": "noop", "delay": delay})
                    latencies.append(time.monotonic() - sent)
                    job = answer.raise_for_status().json()
                    due[job["id"]] = job["run_at"]
                    ctx.progress.update(i + 1)
                submitting = time.monotonic() - began
            finally:
                ctx.progress.finish()
            ctx.progress.start("e2e-scheduled: running")
            try:
                jobruns.wait_idle(client, timeout=last + 120,
                                  states=("scheduled", "queued", "running"))
            finally:
                ctx.progress.finish()
        jobs = jobruns.fetch(client, set(due))
    started = [j for j in jobs if j["started_at"] is not None]
    # Submitted after its run_at (a slow submit loop): due at once, not a late start.
    on_time = [j for j in started if j["created_at"] < due[j["id"]]]
    result: dict[str, Any] = {
        "unit": "jobs/s", "seconds": round(submitting, 3), "requests": count,
        "operations": count, "latency_ms": percentile(latencies), "errors": {},
        "accepted": len(due), "lost": len(due) - len(jobs),
        "jobs": jobruns.job_figures(jobs, slots, 0.0),
        "lateness_ms": percentile(j["started_at"] - due[j["id"]] for j in on_time),
        "early": sum(j["started_at"] < due[j["id"]] for j in started),
        "due_before_submitted": len(started) - len(on_time),
        "server": stats.result(count)}
    result["throughput_per_s"] = result["jobs"].get("jobs_per_s", 0.0)
    result["violations"] = ([f"{result['early']} job(s) started before their run_at"]
                            if result["early"] else [])
    return result
