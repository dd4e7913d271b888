"""Idempotency-Key: a client that sends a submit again (a retry after a dropped connection)
gets the first job back, never a second one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


@pytest.mark.both_backends
def test_keyed_submits_racing_under_a_rate_each_get_one_answer(serve, tmp_path: Path) -> None:
    # Keyed submits from many clients at once share the group commit: the rate still holds
    # across both API workers, a replay answers its job, and a refusal writes nothing.
    config = tmp_path / "scholarsource.toml"
    config.write_text('[tenants.default]\nrate = "30/h"\n')
    server = serve(slots=1, workers=2, args=("--config", str(config)))

    def send(n: int) -> tuple[int, httpx.Response]:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            return n % 40, own.post("/api/jobs", json={"task": "echo", "params": {"n": n % 40}},
                                    headers={"Idempotency-Key": f"k{n % 40}"})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(80)))  # 40 keys, each sent twice
    by_key: dict[int, list[httpx.Response]] = {}
    for key, answer in answers:
        by_key.setdefault(key, []).append(answer)
    created = [key for key, pair in by_key.items() if 202 in [a.status_code for a in pair]]
    assert len(created) == 30, sorted((k, [a.status_code for a in p]) for k, p in by_key.items())
    for key, pair in by_key.items():
        codes = sorted(a.status_code for a in pair)
        if key in created:  # the other one is its replay, whatever the rate has left
            assert codes == [200, 202], (key, codes)
            assert len({a.json()["id"] for a in pair}) == 1
        else:
            assert codes == [429, 429], (key, codes)
            assert {a.json()["error"] for a in pair} == {"rate_limited"}
    jobs = all_jobs(server.client())
    assert sorted(job["idempotency_key"] for job in jobs) == sorted(f"k{k}" for k in created)
