"""A backlog held back whole, through a real `scholarsource serve`: a paused queue's jobs and a
capped queue's stand ahead of other jobs in claim order, and the pool passes both queues over
whole (schema V20's jobs_queued) while it runs the others; resumed, the backlog runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

_BACKLOG = 500  # a queue's held-back jobs (one batch)


def _backlog(client: httpx.Client, queue: str) -> None:
    jobs = [{"task": "noop", "params": {}, "queue": queue}] * _BACKLOG
    response = client.post("/api/jobs/batch", json={"jobs": jobs},
                           headers={"Prefer": "return=minimal"})
    assert response.status_code == 202, response.text


def _queues(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in client.get("/api/queues").json()["queues"]}


def _idle(client: httpx.Client, *names: str) -> bool:
    queues = _queues(client)
    return all(queues[name]["queued"] == queues[name]["running"] == 0 for name in names)


@pytest.mark.both_backends
def test_a_paused_and_a_capped_backlog_ahead_hold_back_no_other_queue(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    config = tmp_path / "scholarsource.toml"
    config.write_text("[queues.work]\n[queues.capped]\nmax_running = 1\n")
    server = serve(slots=2, args=("--config", str(config)))
    client = server.client()
    assert client.post("/api/queues/work/pause").json() == {"name": "work", "paused": True}
    blocker = client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 60},
                                             "queue": "capped"}).json()
    wait_running(client, blocker["id"])  # the capped queue is at its cap
    for queue in ("work", "capped"):
        _backlog(client, queue)
    # Behind 1,000 held-back jobs in claim order (same priority, submitted later).
    later = [submit(client, "noop") for _ in range(20)]
    assert {wait_finished(client, job["id"])["status"] for job in later} == {"succeeded"}
    queues = _queues(client)
    assert (queues["work"]["queued"], queues["work"]["paused"]) == (_BACKLOG, True)
    assert (queues["capped"]["queued"], queues["capped"]["running"]) == (_BACKLOG, 1)

    client.post(f"/api/jobs/{blocker['id']}/cancel")
    assert client.post("/api/queues/work/resume").json() == {"name": "work", "paused": False}
    wait_until(lambda: _idle(client, "work", "capped"), timeout=60,
               message="the backlogs to run once resumed")
