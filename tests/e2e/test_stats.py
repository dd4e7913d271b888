"""/api/stats and its event stream, against a real server."""

from __future__ import annotations

import json

import pytest

from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


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
    assert stats["queues"]["slow"] == {"queued": 1, "running": 1, "failed": 0, "dead": 0}
    assert stats["queues"]["other"]["queued"] == 1
    assert stats["totals"]["succeeded"] == 3 and stats["totals"]["running"] == 1
    assert stats["throughput"]["1m"] == pytest.approx(3 / 60, abs=1e-3)
    noop = stats["tasks"]["noop"]
    assert noop["finished_15m"] == 3 and noop["run_time"]["p50"] >= 0
    assert noop["wait_time"]["p99"] >= noop["wait_time"]["p50"] >= 0
    assert stats["database"]["size_bytes"] > 0
    assert stats["pool"]["pid"] and stats["pool"]["heartbeat_age"] < 5

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
