"""The job-level scenarios against a running ScholarSource: end to end and pickup latency.

End to end: submit M no-op jobs over HTTP as fast as the generator can, wait until nothing is
queued or running, then read the timestamps the server itself wrote (created_at, started_at,
finished_at, all time.time() on this box) from the database, read-only. The HTTP polling only
decides when to stop waiting; it never enters the numbers.

Pickup: on an idle server, one job at a time, started_at - created_at from the job's JSON.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from loadgen import LoadSpec, run_load
from servers import Server

NOOP = {"task": "noop"}
FINISHED = {"succeeded", "failed", "dead", "cancelled"}
# Huey (SQLite) and Dramatiq (Redis), no HTTP in the way, same box (DESIGN.md).
PEERS_JOBS_PER_S = 1500.0


def _quantile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return round(ordered[index] * 1000, 2)


def wait_idle(server: Server, timeout: float, interval: float = 0.05) -> float:
    """Poll until no job is queued or running; returns when that was seen (time.time)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=10) as client:
        while time.monotonic() < deadline:
            busy = any(client.get("/api/jobs", params={"status": s, "limit": 1}).json()["jobs"]
                       for s in ("queued", "running"))
            if not busy:
                return time.time()
            time.sleep(interval)
    raise TimeoutError(f"jobs still queued or running after {timeout}s")


def _query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _db_facts(db: Path, after_seq: int, submit_end: float) -> dict[str, Any]:
    """Status counts and timestamps of the jobs this run made (seq > after_seq)."""
    counts = dict(_query(db, "SELECT status, count(*) FROM jobs WHERE seq > ? GROUP BY status",
                         (after_seq,)))
    (last_finished, after_submit), = _query(
        db, "SELECT max(finished_at), count(*) FILTER (WHERE finished_at > ?) FROM jobs "
            "WHERE seq > ?", (submit_end, after_seq))
    return {"counts": counts, "last_finished": last_finished,
            "finished_after_submit": after_submit}


def end_to_end(server: Server, db: Path, jobs: int, connections: int, processes: int,
               client: str) -> dict[str, Any]:
    """Submit `jobs` no-ops as fast as possible and time them until all are done."""
    (after_seq,), = _query(db, "SELECT coalesce(max(seq), 0) FROM jobs")
    pool = server.pool_pid()
    before = server.cpu_by_role(pool)
    load = run_load(LoadSpec(server.url, "/api/jobs", NOOP, connections=connections,
                             processes=processes, duration=None, total=jobs, warmup=0.0,
                             client=client))
    wait_idle(server, timeout=max(120.0, jobs / 50))
    cpu = {role: seconds - before[role] for role, seconds in server.cpu_by_role(pool).items()}
    facts = _db_facts(db, after_seq, load.ended)
    done = facts["counts"].get("succeeded", 0)
    total_s = facts["last_finished"] - load.started
    drain_s = max(facts["last_finished"] - load.ended, 1e-9)
    return {
        "client": client, "jobs": jobs, "accepted": load.ok, "submit_errors": load.errors,
        "succeeded": done, "db_counts": facts["counts"],
        "lost": load.ok - sum(facts["counts"].values()),
        "submit_seconds": round(load.elapsed, 3), "submit_per_s": round(load.rate, 1),
        "submit_p99_ms": round(load.percentile_ms(99), 2),
        "total_seconds": round(total_s, 3), "jobs_per_s": round(done / total_s, 1),
        "done_at_submit_end": done - facts["finished_after_submit"],
        "drain_seconds": round(drain_s, 3),
        "drain_per_s": round(facts["finished_after_submit"] / drain_s, 1),
        "vs_peers": round(done / total_s / PEERS_JOBS_PER_S, 2),
        "generator_cpu_s": [round(c, 2) for c in load.cpu_seconds],
        "server_cpu_s": {role: round(seconds, 2) for role, seconds in cpu.items()},
        "api_cpu_us_per_job": round(cpu["api"] / max(done, 1) * 1e6),
        "pool_cpu_us_per_job": round(cpu["pool"] / max(done, 1) * 1e6),
    }


def _run_one(client: httpx.Client, first_wait: float) -> dict[str, Any]:
    job = client.post("/api/jobs", json=NOOP).raise_for_status().json()
    time.sleep(first_wait)  # let the server be idle while it picks the job up
    deadline = time.monotonic() + 30
    while job["status"] not in FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job['id']} still {job['status']} after 30s")
        job = client.get(f"/api/jobs/{job['id']}").raise_for_status().json()
        if job["status"] not in FINISHED:
            time.sleep(0.005)
    return job


def pickup(server: Server, count: int, first_wait: float = 0.02) -> dict[str, Any]:
    """Submit one no-op at a time on an idle server; started_at - created_at per job."""
    pickups, turnarounds, statuses = [], [], set()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(count):
            job = _run_one(client, first_wait)
            statuses.add(job["status"])
            pickups.append(job["started_at"] - job["created_at"])
            turnarounds.append(job["finished_at"] - job["created_at"])
    return {
        "jobs": count, "statuses": sorted(statuses),
        "pickup_p50_ms": _quantile_ms(pickups, 50), "pickup_p99_ms": _quantile_ms(pickups, 99),
        "pickup_max_ms": _quantile_ms(pickups, 100),
        "done_p50_ms": _quantile_ms(turnarounds, 50),
        "done_p99_ms": _quantile_ms(turnarounds, 99),
    }
