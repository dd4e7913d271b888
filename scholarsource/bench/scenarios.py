"""The named scenarios of `scholarsource bench`; `all` runs them in the order listed.

HTTP load (`--duration` seconds, or `--jobs` operations; closed loop over `--clients`
connections, or open loop at `--rate` per second):
- submit     POST /api/jobs {"task": "noop"}: the API's write path. The pool runs the jobs
             meanwhile, as in production.
- submit-minimal  the same with `Prefer: return=minimal` (RFC 7240): the answer is the id,
             the state and Location, as short as the baseline's.
- batch      POST /api/jobs/batch with BATCH_JOBS no-op jobs: jobs/s into the queue.
- status     GET /api/jobs/{id} of jobs submitted beforehand: the read path under load.
- frontend   what the ScholarSource frontend does per user: POST /api/submit a 0.2 s sleep
             job, then GET /api/status/{id} every 250 ms until it is done.
- sse        each client submits a 0.2 s sleep job and watches GET /api/jobs/{id}/events to
             the end; reports events/s and each event's delay (arrival - server time).
             With --streams N: N streams held open (held.py) while the clients submit
             no-ops; reports submit latency under them, then the delay of each stream's
             final event when their jobs are cancelled.
Jobs (`--jobs` jobs; see jobruns.py): e2e-noop, e2e-sleep, e2e-cpu, pickup.
Flow control (`--jobs` jobs; see flowcontrol.py): e2e-queues (on a server of its own, with
the queues and rate limit it needs), e2e-scheduled.
Fair slots (`--jobs` jobs of the big tenant; see fairness.py): e2e-fair, on a server of its
own, whose store it writes the jobs of two tenants into.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from scholarsource.bench import fairness, flowcontrol, jobruns
from scholarsource.bench.context import Context, ServerStats, Settings
from scholarsource.bench.flows import Op
from scholarsource.bench.held import HeldStreams
from scholarsource.bench.loadgen import LoadResult
from scholarsource.percentiles import percentile

NOOP = {"task": "noop"}
MINIMAL = ("Prefer", "return=minimal")  # RFC 7240: the short answer
BATCH_JOBS = 1000  # jobs per batch: the default max_batch
SHORT_SLEEP = {"task": "sleep", "params": {"seconds": 0.2}}
HELD_IDLE_SECONDS = 3.0  # sse --streams: the server measured with only the streams open
_STATUS_SEED = (100, 1000)  # jobs the status scenario reads: 10 per client, within these


@dataclass(frozen=True)
class Scenario:
    """A named load, what it measures, and whether the baseline app can serve it too."""

    name: str
    summary: str  # "{jobs}" stands for this run's job count
    run: Callable[[Context], dict[str, Any]]
    baseline: bool = False
    client: str | None = None  # the client it always uses, whatever --client says
    # TOML the scenario's server needs on top of --config: it then runs on a server of its
    # own, which the bench starts (so it cannot run over --url).
    server_config: str | None = None

    def header(self, settings: Settings) -> str:
        """The summary with this run's job count and the client that sends the load."""
        jobs = settings.jobs or jobruns.DEFAULT_JOBS.get(self.name, 0)
        return (f"{self.summary.replace('{jobs}', f'{jobs:,}')} "
                f"[{self.client or settings.client} client]")


def http_result(load: LoadResult, stats: ServerStats, unit: str,
                throughput: float) -> dict[str, Any]:
    """The common figures of an HTTP load."""
    result = load.summary()
    result.update(unit=unit, throughput_per_s=round(throughput, 1),
                  server=stats.result(sum(load.all_statuses.values()), load.active_seconds))
    return result


def submit(ctx: Context) -> dict[str, Any]:
    """POST /api/jobs as fast as the clients go (or at --rate)."""
    return _submits(ctx, "submit", Op(bodies=(NOOP,)))


def submit_minimal(ctx: Context) -> dict[str, Any]:
    """The same, asking for the short answer (the id, the state, Location) that a client
    that only keeps the id needs: what the baseline answers is closer to it."""
    return _submits(ctx, "submit-minimal", Op(bodies=(NOOP,), headers=(MINIMAL,)))


def _submits(ctx: Context, name: str, op: Op) -> dict[str, Any]:
    with ctx.server_stats() as stats:
        load = ctx.load(name, ctx.spec(op))
    return http_result(load, stats, "req/s", len(load.latencies) / load.elapsed)


def batch(ctx: Context) -> dict[str, Any]:
    """POST /api/jobs/batch of BATCH_JOBS no-op jobs as fast as the clients go, asking for
    the short answer (ids and states) that a bulk loader needs."""
    body = {"jobs": [NOOP] * BATCH_JOBS}
    op = Op(path="/api/jobs/batch", bodies=(body,), headers=(MINIMAL,))
    with ctx.server_stats() as stats:
        load = ctx.load("batch", ctx.spec(op))
    result = http_result(load, stats, "jobs/s",
                         len(load.latencies) * BATCH_JOBS / load.elapsed)
    result["batch_jobs"] = BATCH_JOBS
    return result


def status(ctx: Context) -> dict[str, Any]:
    """GET of existing jobs by id, spread over the jobs submitted first."""
    seed = min(max(ctx.settings.clients * 10, _STATUS_SEED[0]), _STATUS_SEED[1])
    seeded = ctx.load("status: seeding", ctx.spec(Op(bodies=(NOOP,), collect_ids=True),
                                                  total=seed))
    if not seeded.ids:
        raise RuntimeError(f"status: no job could be submitted ({seeded.errors})")
    op = Op(method="GET", path="/api/jobs/{id}", ids=tuple(seeded.ids), ok_statuses=(200,))
    with ctx.server_stats() as stats:
        load = ctx.load("status", ctx.spec(op))
    result = http_result(load, stats, "req/s", len(load.latencies) / load.elapsed)
    result["seeded_jobs"] = len(seeded.ids)
    return result


def frontend(ctx: Context) -> dict[str, Any]:
    """Many users each submitting through /api/submit and polling /api/status/{id}."""
    op = Op(kind="frontend", bodies=(SHORT_SLEEP,), ok_statuses=(200, 202))
    with ctx.server_stats() as stats:
        load = ctx.load("frontend", ctx.spec(op))
    result = http_result(load, stats, "req/s", len(load.latencies) / load.elapsed)
    result.update(users_done_per_s=round(load.operations / load.elapsed, 2),
                  user_flow_ms=percentile(load.flows))
    return result


def sse(ctx: Context) -> dict[str, Any]:
    """Clients watching their jobs' event streams (always over httpx: it needs streaming);
    with --streams, submits under that many open streams."""
    if ctx.settings.streams:
        return _sse_held(ctx)
    op = Op(kind="sse", bodies=(SHORT_SLEEP,), ok_statuses=(200, 202))
    with ctx.server_stats() as stats:
        load = ctx.load("sse", ctx.spec(op, client="httpx"))
    result = http_result(load, stats, "events/s", len(load.lags) / load.elapsed)
    result.update(streams_done_per_s=round(load.operations / load.elapsed, 2),
                  event_lag_ms=percentile(load.lags), events=len(load.lags),
                  stream_ms=percentile(load.flows))
    return result


def _sse_held(ctx: Context) -> dict[str, Any]:
    held = HeldStreams(ctx.target.url, ctx.settings.streams)
    ctx.progress.start(f"sse: opening {ctx.settings.streams:,} streams", total=None, seconds=None)
    try:
        held.__enter__()
    finally:
        ctx.progress.finish()
    try:
        # What the open streams cost by themselves: the server with nothing else to do.
        with ctx.server_stats() as idle:
            time.sleep(HELD_IDLE_SECONDS)
        reads_before, began = _event_reads(ctx.target.url), time.monotonic()
        with ctx.server_stats() as stats:
            load = ctx.load(f"sse: submits under {ctx.settings.streams:,} streams",
                            ctx.spec(Op(bodies=(NOOP,))))
        reads, seconds = _event_reads(ctx.target.url), time.monotonic() - began
    finally:
        held.__exit__(None, None, None)
    result = http_result(load, stats, "req/s", len(load.latencies) / load.elapsed)
    result["held"] = held.result()
    idle_cpu = idle.result(1)
    result["held"]["idle_server_cores"] = idle_cpu.get("cpu_cores")
    result["held"]["idle_api_cores"] = idle_cpu.get("roles", {}).get("api", {}).get("cpu_cores")
    missed = held.streams - result["held"].get("ended_on_final_event", 0)
    if "failed" in result["held"] or missed:
        result["failed"] = result["held"].get("failed") or (
            f"{missed} held stream(s) did not end on their job's final event")
    if reads is not None and reads_before is not None:
        result["held"]["event_reads_per_s"] = round(
            (reads - reads_before) / seconds, 1)
    return result


def _event_reads(url: str) -> float | None:
    """The server's scholarsource_event_reads_total (None: a server that has no reader)."""
    try:
        text = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("scholarsource_event_reads_total "):
            return float(line.split()[1])
    return None


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("submit", "POST only: the API's write path", submit, baseline=True),
    Scenario("submit-minimal", "POST only, with Prefer: return=minimal (id, state and "
             "Location)", submit_minimal, baseline=True),
    Scenario("batch", f"POST /api/jobs/batch of {BATCH_JOBS:,} no-op jobs (Prefer: "
             f"return=minimal): jobs/s into the queue", batch),
    Scenario("status", "GET of existing jobs: the read path under load", status,
             baseline=True),
    Scenario("e2e-noop", "{jobs} no-op jobs, submit to all done: queue + dispatch overhead",
             jobruns.e2e_noop),
    Scenario("e2e-sleep", "{jobs} I/O-bound jobs (10-400 ms sleeps): concurrency and slot "
             "usage", jobruns.e2e_sleep),
    Scenario("e2e-cpu", "{jobs} CPU-bound jobs (250 ms each): efficiency = ideal time / "
             "measured time", jobruns.e2e_cpu),
    Scenario("pickup", "idle server, {jobs} jobs one at a time: submit-to-start latency",
             jobruns.pickup, client="httpx"),
    Scenario("e2e-queues", "{jobs} jobs over a capped, a reserved and a shared queue with a "
             "rate-limited task: per-queue wait, limits checked", flowcontrol.e2e_queues,
             server_config=flowcontrol.QUEUES_CONFIG),
    Scenario("e2e-scheduled", "{jobs} jobs with a 1-3 s delay: start lateness after run_at",
             flowcontrol.e2e_scheduled, client="httpx"),
    Scenario("e2e-fair", "{jobs} 20 ms jobs of one tenant, then 20 of another: the second's "
             "wait (fair slots)", fairness.e2e_fair, server_config=fairness.FAIR_CONFIG),
    Scenario("frontend", "submit via /api/submit, poll /api/status/{id} every 250 ms",
             frontend),
    Scenario("sse", "clients watching their jobs over /api/jobs/{id}/events", sse,
             client="httpx"),
]}
