"""POST /api/jobs/batch through a real server: all or nothing, in order, with per-item
idempotency keys; a bad job names its index; too many jobs, too large a body and a batch
over the quota are refused whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import all_jobs, wait_finished

pytestmark = [pytest.mark.e2e, pytest.mark.both_backends]


def echo(n: int, **extra: Any) -> dict[str, Any]:
    return {"task": "echo", "params": {"value": n}, **extra}


def test_a_batch_goes_in_whole_in_order_and_keys_replay_it(
        serve: Callable[..., Server]) -> None:
    server = serve(slots=2)
    client = server.client()
    # A null key is no key (clients send unset fields as null).
    body = {"jobs": [echo(0, idempotency_key="k0"), echo(1, priority=5, idempotency_key=None),
                     echo(2, idempotency_key="k2")]}
    created = client.post("/api/jobs/batch", json=body)
    assert created.status_code == 202, created.text
    jobs = created.json()["jobs"]
    assert [job["params"]["value"] for job in jobs] == [0, 1, 2]
    assert jobs[1]["priority"] == 5 and jobs[0]["idempotency_key"] == "k0"
    assert [wait_finished(client, job["id"])["result"] for job in jobs] == [
        {"value": 0}, {"value": 1}, {"value": 2}]
    # The keyed items answer their jobs; only the plain one is new.
    again = client.post("/api/jobs/batch", json=body)
    assert again.status_code == 202
    ids = [job["id"] for job in again.json()["jobs"]]
    assert ids[0] == jobs[0]["id"] and ids[2] == jobs[2]["id"] and ids[1] != jobs[1]["id"]
    replay = client.post("/api/jobs/batch", json={"jobs": [echo(0, idempotency_key="k0")]})
    assert replay.status_code == 200 and replay.json()["jobs"][0]["id"] == jobs[0]["id"]
    # The same key for other params: 409 naming the index, and the batch's new job is not in.
    before = len(all_jobs(client))
    clash = client.post("/api/jobs/batch", json={"jobs": [echo(7), echo(8, idempotency_key="k2")]})
    assert clash.status_code == 409
    assert clash.json()["error"] == "idempotency_key_reused" and clash.json()["index"] == 1
    assert clash.json()["message"].startswith("jobs[1]: Idempotency-Key 'k2'")
    assert len(all_jobs(client)) == before
    # Two items of one batch with one key and other params: the message names the earlier
    # item, not the id of a job that the refusal left unwritten.
    twice = client.post("/api/jobs/batch", json={"jobs": [echo(9, idempotency_key="k9"),
                                                          echo(10, idempotency_key="k9")]})
    assert (twice.status_code, twice.json()["index"]) == (409, 1)
    assert "another job, jobs[0] of this batch" in twice.json()["message"]
    assert len(all_jobs(client)) == before


def test_prefer_return_minimal_answers_ids_and_states_only(serve: Callable[..., Server]) -> None:
    server = serve(slots=1)
    client = server.client()
    minimal = {"Prefer": "respond-async, return=minimal"}
    batch = client.post("/api/jobs/batch", json={"jobs": [echo(0), echo(1)]}, headers=minimal)
    assert batch.status_code == 202, batch.text
    assert batch.headers["Preference-Applied"] == "return=minimal"
    jobs = batch.json()["jobs"]
    assert [set(job) for job in jobs] == [{"id", "status", "final"}] * 2
    assert [job["status"] for job in jobs] == ["queued", "queued"]
    one = client.post("/api/jobs", json=echo(2), headers=minimal)
    assert one.status_code == 202 and set(one.json()) == {"id", "status", "final"}
    assert one.headers["Location"] == f"/api/jobs/{one.json()['id']}"
    ids = [job["id"] for job in jobs] + [one.json()["id"]]
    assert [wait_finished(client, i)["result"] for i in ids] == [
        {"value": 0}, {"value": 1}, {"value": 2}]
    full = client.post("/api/jobs", json=echo(3))  # without the header: the whole job
    assert "Preference-Applied" not in full.headers and "params" in full.json()


BAD_ITEMS = [
    ({"task": "nosuch"}, "unknown_task"),
    ({"task": "echo", "params": {"value": 1}, "priority": "high"}, "invalid_request"),
    ({"task": "sleep", "params": {"seconds": "long"}}, "invalid_params"),
    ({"task": "echo", "params": {}, "idempotency_key": "has spaces"}, "invalid_request"),
    ("echo", "invalid_request"),
]


def test_one_bad_job_refuses_the_batch_and_names_its_index(
        serve: Callable[..., Server]) -> None:
    server = serve(slots=1)
    client = server.client()
    for index, (item, code) in enumerate(BAD_ITEMS):
        jobs = [echo(n) for n in range(index)] + [item, echo(99)]
        refused = client.post("/api/jobs/batch", json={"jobs": jobs})
        assert refused.status_code == 422, refused.text
        answer = refused.json()
        assert (answer["error"], answer["index"]) == (code, index)
        assert answer["message"].startswith(f"jobs[{index}]: ")
        # The single submit gives the same code for the same body.
        if isinstance(item, dict) and "idempotency_key" not in item:
            assert client.post("/api/jobs", json=item).json()["error"] == code
    assert all_jobs(client) == []


def test_too_many_jobs_too_large_a_body_and_a_batch_over_the_rate_are_refused_whole(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    settings = tmp_path / "scholarsource.toml"
    settings.write_text('max_batch_body_bytes = "64KiB"\n[tenants.default]\nrate = "40/h"\n')
    server = serve(slots=1, args=("--config", str(settings)))
    client = server.client()
    too_many = client.post("/api/jobs/batch", json={"jobs": [echo(n) for n in range(1001)]})
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "batch_too_large" and too_many.json()["limit"] == 1000
    # Over the batch's own body limit (larger than max_body_bytes' 1 MiB would allow too).
    big = {"jobs": [echo(n, params={"value": "x" * 1000}) for n in range(100)]}
    too_large = client.post("/api/jobs/batch", json=big)
    assert too_large.status_code == 413
    assert too_large.json() == {"error": "payload_too_large", "limit": 65536,
                                "message": "the body is larger than 65536 bytes"}
    # 40 tokens: 30 go in, then 20 more are refused whole; 10 still fit.
    assert client.post("/api/jobs/batch",
                       json={"jobs": [echo(n) for n in range(30)]}).status_code == 202
    over = client.post("/api/jobs/batch", json={"jobs": [echo(n) for n in range(20)]})
    assert over.status_code == 429 and over.json()["error"] == "rate_limited"
    assert over.headers["RateLimit-Remaining"] == "10"
    assert len(all_jobs(client)) == 30
    fits = client.post("/api/jobs/batch", json={"jobs": [echo(n) for n in range(10)]})
    assert fits.status_code == 202 and fits.headers["RateLimit-Remaining"] == "0"
    assert len(all_jobs(client)) == 40
    # Empty, or not a batch at all.
    for body in ({"jobs": []}, {"jobs": {}}, [echo(0)], {"jobs": [echo(0)], "more": 1}):
        bad = client.post("/api/jobs/batch", json=body)
        assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request"), body


def test_a_full_batch_goes_in_whole_and_its_ids_sort_by_time(
        serve: Callable[..., Server]) -> None:
    # max_batch (1,000) jobs: one guarded INSERT (on SQLite padded to 1,024 rows). The ids
    # start with the batch's millisecond, so a later batch's ids sort after this one's.
    server = serve(slots=1)
    client = server.client()
    minimal = {"Prefer": "return=minimal"}
    first = client.post("/api/jobs/batch", headers=minimal,
                        json={"jobs": [echo(n) for n in range(1000)]})
    assert first.status_code == 202, first.text
    ids = [job["id"] for job in first.json()["jobs"]]
    assert len(set(ids)) == 1000 and len({job_id[:8] for job_id in ids}) == 1
    second = client.post("/api/jobs/batch", headers=minimal, json={"jobs": [echo(1000)]})
    assert second.status_code == 202 and second.json()["jobs"][0]["id"] > max(ids)
    listed = {job["id"]: job["params"]["value"] for job in all_jobs(client)}
    assert len(listed) == 1001
    assert [listed[job_id] for job_id in ids] == list(range(1000))
