"""Fault injection with numbers: does a real server lose or repeat jobs, and how fast does it
come back after kill -9?

    .venv/bin/python bench/faults.py [--jobs 2000] [--slots 4] [--json FILE]

1. chaos: `--jobs` jobs, each appending "job attempt" to a file as its body starts, while
   random slot processes are killed with SIGKILL (and, once, the pool). Counts jobs lost and
   executions beyond each job's attempts (both must be 0).
2. recovery after kill -9 of the pool, and after kill -9 of the whole tree plus a restart on
   the same data directory: seconds from the kill until a job finishes again, with the
   queue never empty.

Runs the tasks in tests/sample_tasks.py (put on PYTHONPATH for the server).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from scholarsource.launcher import ServerProcess, free_port, launch, serve_argv

ROOT = Path(__file__).resolve().parent.parent


def start(data: Path, slots: int, log: Path) -> ServerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    env.update(PYTHONPATH=str(ROOT / "tests"), SCHOLARSOURCE_TASK_MODULES="sample_tasks",
               SCHOLARSOURCE_BACKOFF_BASE="0.05", SCHOLARSOURCE_BACKOFF_MAX="0.2")
    port = free_port()
    return launch(serve_argv(port, data, workers=2, slots=slots), url=f"http://127.0.0.1:{port}",
                  log_path=log, env=env)


def every_job(client: httpx.Client) -> list[dict[str, Any]]:
    jobs, cursor = [], None
    while True:
        query: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/jobs", params=query).json()
        jobs += page["jobs"]
        if (cursor := page["next_cursor"]) is None:
            return jobs


def wait_ended(client: httpx.Client, count: int) -> list[dict[str, Any]]:
    while True:
        try:
            jobs = every_job(client)
        except httpx.HTTPError:
            jobs = []
        if len(jobs) >= count and all(j["status"] in ("succeeded", "dead") for j in jobs):
            return jobs
        time.sleep(0.5)


def submit(client: httpx.Client, runs: Path, seconds: float) -> str:
    return str(client.post("/api/jobs", json={
        "task": "mark", "max_attempts": 5,
        "params": {"path": str(runs), "seconds": seconds}}).json()["id"])


def chaos(work: Path, jobs: int, slots: int) -> dict[str, Any]:
    server = start(work / "chaos", slots, work / "chaos.log")
    runs = work / "chaos-runs.log"
    faults: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(1)
        while not stop.wait(rng.uniform(0.05, 0.25)):
            try:
                processes = httpx.get(f"{server.url}/api/health", timeout=5).json()["processes"]
                kind = "pool" if faults["slot"] == 10 and not faults["pool"] else "slot"
                victim = processes["pool"] if kind == "pool" else rng.choice(processes["slots"])
                os.kill(victim, signal.SIGKILL)
                faults[kind] += 1
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError,
                    ProcessLookupError):
                continue

    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            started = time.monotonic()
            thread = threading.Thread(target=killer, daemon=True)
            thread.start()
            ids = {submit(client, runs, 0.005) for _ in range(jobs)}
            ended = wait_ended(client, jobs)
            stop.set()
            thread.join()
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    executions: collections.Counter[str] = collections.Counter(
        line.split()[0] for line in runs.read_text().splitlines())
    by_id = {j["id"]: j for j in ended}
    return {
        "jobs": jobs, "seconds": round(elapsed, 1), "faults": dict(faults),
        "lost": len(ids - by_id.keys()),
        "beyond_attempts": sum(max(0, executions[i] - by_id[i]["attempts"]) for i in by_id),
        "succeeded": sum(j["status"] == "succeeded" for j in ended),
        "dead": sum(j["status"] == "dead" for j in ended),
        "attempts_hit": sum(j["crashes"] for j in ended),
    }


def first_finish_after(db: Path, moment: float) -> float:
    """Wall-clock seconds from `moment` to the first job that finished after it, read from
    the database itself (read-only), whatever the API is doing meanwhile."""
    while True:
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                (done,) = conn.execute("SELECT min(finished_at) FROM jobs WHERE "
                                       "status = 'succeeded' AND finished_at > ?",
                                       (moment,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            done = None
        if done is not None:
            return float(done) - moment
        time.sleep(0.01)


def recovery(work: Path, slots: int) -> dict[str, float]:
    data, runs = work / "recovery", work / "recovery-runs.log"
    db = data / "scholarsource.db"
    server = start(data, slots, work / "recovery-1.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(2000):  # a queue that outlasts both kills
                submit(client, runs, 0.05)
            first_finish_after(db, time.time())
            pool = client.get("/api/health").json()["processes"]["pool"]
            os.kill(pool, signal.SIGKILL)
            killed = time.time()
            pool_seconds = first_finish_after(db, killed)
            server.kill_group()
            killed = time.time()
            server.proc.wait()
    finally:
        server.stop()
    server = start(data, slots, work / "recovery-2.log")
    try:
        tree_seconds = first_finish_after(db, killed)
    finally:
        server.stop()
    return {"pool_kill_to_next_finish_s": round(pool_seconds, 3),
            "tree_kill_to_next_finish_s": round(tree_seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"chaos": chaos(Path(tmp), args.jobs, args.slots),
                   "recovery": recovery(Path(tmp), args.slots)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if results["chaos"]["lost"] or results["chaos"]["beyond_attempts"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
