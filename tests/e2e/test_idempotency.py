"""Idempotency-Key: a client that sends a submit again (a retry after a dropped connection)
gets the first job back, never a second one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs

pytestmark = pytest.mark.e2e


@pytest.mark.both_backends
def test_the_same_key_gives_the_same_job_once(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    body = {"task": "echo", "params": {"order": 42}}
    first = client.post("/api/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 202 and first.json()["idempotency_key"] == "order-42"
    again = client.post("/api/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    compat = client.post("/api/submit", json=body, headers={"Idempotency-Key": "order-42"})
    assert compat.status_code == 200 and compat.json()["job_id"] == first.json()["id"]

    reused = client.post("/api/jobs", json={"task": "echo", "params": {"order": 43}},
                         headers={"Idempotency-Key": "order-42"})
    assert (reused.status_code, reused.json()["error"]) == (409, "idempotency_key_reused")
    bad = client.post("/api/jobs", json=body, headers={"Idempotency-Key": "has space"})
    assert (bad.status_code, bad.json()["field"]) == (422, "Idempotency-Key")

    # Twenty clients racing with one key: one job.
    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            return own.post("/api/jobs", json=body, headers={"Idempotency-Key": "race"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 19 + [202]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(all_jobs(client)) == 2
