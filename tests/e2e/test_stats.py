"""/api/stats and its event stream, against a real server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from scholarsource.api.stats import STREAM_INTERVAL
from scholarsource.store import schema
from scholarsource.store.base import Ending, NewJob, Outcome
from scholarsource.store.sqlite import SqliteStore
from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.both_backends
def test_stats_show_queues_slots_throughput_and_timings(serve, tmp_path) -> None:
    client = serve(slots=1).client()
    for _ in range(3):
        wait_finished(client, submit(client, "noop")["id"])
    held = client.post("/api/jobs", json={"task": "sleep", "queue": "slow",
                                          "params": {"seconds": 30}}).json()
    wait_running(client, held["id"])
    waiting = client.post("/api/jobs", json={"task": "noop", "queue": "slow"}).json()
    dead = client.post("/api/jobs", json={"task": "fail", "queue": "other"}).json()

    # Slots come from the pool's heartbeat, once a second.
    stats = wait_until(lambda: (s := client.get("/api/stats").json())["slots"]["busy"] and s,
                       message="the heartbeat to count the busy slot")
    assert stats["slots"] == {"busy": 1, "total": 1}
    assert stats["queues"]["slow"] == {"scheduled": 0, "waiting": 0, "queued": 1, "running": 1,
                                       "retrying": 0, "dead": 0}
    assert stats["queues"]["other"]["queued"] == 1
    assert stats["totals"]["succeeded"] == 3 and stats["totals"]["running"] == 1
    assert stats["throughput"]["1m"] == pytest.approx(3 / 60, abs=1e-3)
    noop = stats["tasks"]["noop"]
    assert noop["finished_15m"] == 3 and noop["run_time"]["p50"] >= 0
    assert noop["wait_time"]["p99"] >= noop["wait_time"]["p50"] >= 0
    assert stats["database"]["size_bytes"] > 0
    assert stats["pool"]["pid"] and stats["pool"]["heartbeat_age"] < 5
    # The throughput history: 90 buckets of 10 s, the three no-ops in the latest ones.
    history = stats["history"]
    assert history["step"] == 10 and len(history["finished"]) == 90
    assert sum(history["finished"]) == 3 and sum(history["finished"][-6:]) == 3
    assert stats["time"] - history["start"] == pytest.approx(900, abs=0.01)

    # The slots view: what the one slot runs, its process and how long the job has run.
    def slot_row() -> dict[str, Any] | None:
        rows = client.get("/api/stats").json()["pool"]["slots"]
        return rows[0] if rows and rows[0]["rss"] and rows[0]["job_id"] else None

    row = wait_until(slot_row, message="the heartbeat to describe the busy slot")
    assert row["slot"] == 0 and row["job_id"] == held["id"] and row["task"] == "sleep"
    assert row["pid"] in client.get("/api/health").json()["processes"]["slots"]
    assert row["rss"] > 1024**2 and row["cpu_seconds"] >= 0
    assert row["running_for"] >= 0 and row["started_at"] <= time.time()

    client.post(f"/api/jobs/{held['id']}/cancel")
    wait_finished(client, dead["id"])
    wait_finished(client, waiting["id"])
    after = client.get("/api/stats").json()
    assert after["queues"]["other"]["dead"] == 1 and after["totals"]["cancelled"] == 1

    with client.stream("GET", "/api/stats/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "event: stats"
        first = json.loads(next(lines).removeprefix("data: "))
    assert first["totals"]["dead"] == 1


VIEWERS = 40
SPAN = 10.0  # seconds of server time each viewer watches


async def _finished_jobs(db: Path, n: int) -> None:
    """`n` no-ops that succeeded just now, written through the store as the pool would."""
    schema.migrate(db)
    store = await SqliteStore.open(db, inline=True)
    try:
        await store.submit_many([NewJob("noop", {}, "default", 0, 1)] * n)
        claims = await store.claim("seed", n, 60)
        await store.finish([Outcome(c.id, c.token, Ending.SUCCEEDED) for c in claims], 3)
    finally:
        await store.close()


def _watch(url: str, start: threading.Barrier) -> list[float]:
    """One viewer: the `time` of every stats event it receives over SPAN seconds of the
    server's clock, from its first event on."""
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        start.wait()
        with client.stream("GET", "/api/stats/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    times.append(json.loads(line.removeprefix("data: "))["time"])
                    if times[-1] - times[0] >= SPAN:
                        return times
    return times


def test_forty_viewers_each_get_an_update_every_interval(serve, tmp_path: Path) -> None:
    # Issue 10 §8: with 40 dashboards open, each got about one update in four.
    # A busy box: 100,000 jobs finished in the last 15 minutes (about what a bench leaves),
    # which each snapshot's throughput and timing queries read.
    data = tmp_path / "data"
    asyncio.run(_finished_jobs(data / "scholarsource.db", 100_000))
    server = serve(slots=1, data_dir=data)
    start = threading.Barrier(VIEWERS)
    with ThreadPoolExecutor(VIEWERS) as pool:
        viewers = list(pool.map(lambda _: _watch(server.url, start), range(VIEWERS)))
    # One event at connect, then one per tick up to SPAN later: the first comes at any
    # phase and the rest on whole ticks, so one more may fit in.
    expected = SPAN / STREAM_INTERVAL + 1
    counts = sorted(len(times) for times in viewers)
    # Counted against the server's clock: a slow client reads late, not fewer events. (Before
    # the shared snapshot: 8 each.)
    assert counts[0] >= expected - 1, counts
    assert counts[-1] <= expected + 1, counts
    assert all(len(set(times)) == len(times) for times in viewers)  # never the same twice
