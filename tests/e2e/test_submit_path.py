"""The plain submit through a real server after issue 15's CPU cuts to its path: what a
client sends and gets back is unchanged. The cuts read Origin, Sec-Fetch-Site and
Idempotency-Key from the raw headers, skip the tenant's query string when there is none,
and bind a row's NULL columns and flags through sqlite3 adapters."""

from __future__ import annotations

import pytest

from tests.e2e.jobs_api import all_jobs, wait_finished

pytestmark = pytest.mark.e2e

NOOP = {"task": "noop"}


def test_a_plain_submit_and_the_checks_on_its_path_answer_as_before(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    answer = client.post("/api/jobs", json=NOOP)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    stored = wait_finished(client, job["id"])
    fields = ("id", "tenant", "task", "queue", "unique", "bypass_cache", "idempotency_key",
              "concurrency_key", "timeout", "depends_on", "created_at")
    assert {k: stored[k] for k in fields} == {k: job[k] for k in fields}
    assert (stored["tenant"], stored["unique"], stored["bypass_cache"], stored["status"]) == (
        "default", False, False, "succeeded")

    # A page of another site is refused before anything is written; the same origin passes.
    before = len(all_jobs(client))
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = client.post("/api/jobs", json=NOOP, headers=headers)
        assert (refused.status_code, refused.json()["error"]) == (403, "cross_site_request")
    assert len(all_jobs(client)) == before
    assert client.post("/api/jobs", json=NOOP, headers={"Origin": server.url}).status_code == 202

    # Idempotency-Key is still read: the same key answers with the first job, replayed.
    first = client.post("/api/jobs", json=NOOP, headers={"Idempotency-Key": "order-7"})
    again = client.post("/api/jobs", json=NOOP, headers={"Idempotency-Key": "order-7"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    bad = client.post("/api/jobs", json=NOOP, headers={"Idempotency-Key": "has space"})
    assert (bad.status_code, bad.json()["field"]) == (422, "Idempotency-Key")

    # Content-Type, Content-Length and Prefer are read from the raw headers too.
    short = client.post("/api/jobs", json=NOOP, headers={"Prefer": "return=minimal"})
    assert short.headers["Preference-Applied"] == "return=minimal"
    assert sorted(short.json()) == ["final", "id", "status"]
    assert "Preference-Applied" not in answer.headers
    plain = client.post("/api/jobs", content=b'{"task": "noop"}',
                        headers={"Content-Type": "text/plain"})
    assert (plain.status_code, plain.json()["error"]) == (415, "unsupported_media_type")
    chunked = client.post("/api/jobs", content=iter([b'{"task":', b' "noop"}']),
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert chunked.status_code == 202, chunked.text

    # ?tenant= is still read when there is a query string (auth = none: the admin's right).
    other = client.post("/api/jobs?tenant=globex", json=NOOP)
    assert (other.status_code, other.json()["tenant"]) == (202, "globex")
