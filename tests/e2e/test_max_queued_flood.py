"""The server-wide max_queued through a real server on both stores: a flood of submits from
clients spread over four API workers stops exactly at the cap (on PostgreSQL each worker's
guarded insert used to read the count before the others' inserts committed)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import all_jobs

pytestmark = [pytest.mark.e2e, pytest.mark.both_backends]

CAP = 30


def test_a_flood_over_four_api_workers_stops_exactly_at_max_queued(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=1, workers=4, env={"SCHOLARSOURCE_MAX_QUEUED": str(CAP)})
    start = threading.Barrier(8)

    def hammer(_: int) -> list[httpx.Response]:
        # A fresh connection per request spreads the requests over the workers. The jobs
        # are due in an hour: scheduled, they stay unfinished and keep their places.
        with httpx.Client(base_url=server.url, timeout=30,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            start.wait()
            return [client.post("/api/jobs", json={"task": "noop", "delay": 3600})
                    for _ in range(12)]

    with ThreadPoolExecutor(8) as clients:
        answers = [answer for sent in clients.map(hammer, range(8)) for answer in sent]
    refused = [a for a in answers if a.status_code != 202]
    assert len(answers) - len(refused) == CAP
    assert {(a.status_code, a.json()["error"]) for a in refused} == {(429, "quota_exceeded")}
    assert all("the server takes at most 30" in a.json()["message"] for a in refused)
    assert len(all_jobs(server.client())) == CAP
