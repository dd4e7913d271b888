"""The result cache, unique jobs and the frontend's own submit form, through a real server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs, wait_finished
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.both_backends
def test_a_cached_result_answers_again_and_runs_nothing(serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    client = server.client()
    runs = tmp_path / "runs"

    def send(**fields: Any) -> httpx.Response:
        # Params in a different order each time: the same params as canonical JSON.
        order = fields.pop("order", 1)
        params = {"path": str(runs), "seconds": 0}
        if order < 0:
            params = dict(reversed(params.items()))
        return client.post("/api/jobs", json={"task": "record", "params": params, **fields})

    first = send(cache_ttl=60)
    assert first.status_code == 202 and first.json()["cache_ttl"] == 60
    assert wait_finished(client, first.json()["id"])["status"] == "succeeded"

    hit = send(cache_ttl=60, order=-1)
    assert (hit.status_code, hit.headers["cache-hit"]) == (200, "true")
    assert hit.json()["id"] == first.json()["id"] and hit.json()["status"] == "succeeded"
    assert len(lines(runs)) == 1 and len(all_jobs(client, task="record")) == 1

    # bypass_cache runs anew, and its result is then the one the cache answers with.
    fresh = send(cache_ttl=60, bypass_cache=True)
    assert fresh.status_code == 202 and "cache-hit" not in fresh.headers
    done = wait_finished(client, fresh.json()["id"])
    assert done["status"] == "succeeded" and done["bypass_cache"] is True
    assert len(lines(runs)) == 2
    hit = send(cache_ttl=60)
    assert (hit.status_code, hit.json()["id"]) == (200, fresh.json()["id"])

    # A result older than the submit's cache_ttl answers nothing: it runs again.
    wait_until(lambda: time.time() > done["finished_at"] + 0.3, 5,
               message="the result to be older than 0.3 s")
    late = send(cache_ttl=0.3)
    assert late.status_code == 202 and late.json()["id"] not in {first.json()["id"],
                                                                 fresh.json()["id"]}
    wait_finished(client, late.json()["id"])
    assert len(lines(runs)) == 3 and len(all_jobs(client, task="record")) == 3


def test_bad_cache_and_unique_fields_are_refused_and_write_nothing(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    for field, value in (("cache_ttl", -1), ("cache_ttl", 31 * 86400), ("cache_ttl", "60"),
                         ("bypass_cache", "yes"), ("unique", 1)):
        answer = client.post("/api/jobs", json={"task": "noop", field: value})
        assert answer.status_code == 422, (field, value, answer.text)
        assert (answer.json()["error"], answer.json()["field"]) == ("invalid_request", field)
    # Without compat_task, a body that names no task is refused, naming the setting.
    form = client.post("/api/submit", json={"course": "CS101", "bypass_cache": False})
    assert (form.status_code, form.json()["error"]) == (422, "compat_task_not_set")
    assert "compat_task" in form.json()["message"] and form.json()["setting"] == "compat_task"
    assert all_jobs(client) == []


@pytest.mark.both_backends
def test_ten_concurrent_unique_submits_make_one_job(serve) -> None:
    # A short grace: the 60 s job is still running when the test stops the server.
    server = serve(slots=1, workers=2, env={"SCHOLARSOURCE_GRACE_PERIOD": "1"})
    client = server.client()
    body = {"task": "sleep", "params": {"seconds": 60}, "unique": True}

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            return own.post("/api/jobs", json=body)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 9 + [202]
    (job_id,) = {a.json()["id"] for a in answers}
    assert len(all_jobs(client, task="sleep")) == 1

    # Once it has ended, the next unique submit makes a new job...
    client.post(f"/api/jobs/{job_id}/cancel")
    assert wait_finished(client, job_id)["status"] == "cancelled"
    second = client.post("/api/jobs", json=body)
    assert second.status_code == 202 and second.json()["id"] != job_id
    # ...and the first may not come back while that one is live: one live twin at most.
    retry = client.post(f"/api/jobs/{job_id}/retry")
    assert (retry.status_code, retry.json()["error"]) == (409, "unique_job_live")
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"


def test_the_frontend_form_runs_compat_task_with_its_cache(serve, tmp_path: Path) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_COMPAT_TASK": "course"})
    client = server.client()
    runs = tmp_path / "runs"
    form = {"course": "CS101", "path": str(runs)}

    first = client.post("/api/submit", json={**form, "bypass_cache": False})
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    assert first.json()["params"] == form and first.json()["cache_ttl"] == 3600  # the task's
    wait_finished(client, job_id)

    # The task's cache_ttl applies: the same form answers with the same job.
    again = client.post("/api/submit", json={"path": str(runs), "course": "CS101"})
    assert (again.status_code, again.headers["cache-hit"]) == (200, "true")
    assert again.json()["job_id"] == job_id
    assert client.get(f"/api/status/{job_id}").json()["result"] == {"course": "CS101"}

    fresh = client.post("/api/submit", json={**form, "bypass_cache": True})
    assert fresh.status_code == 202 and fresh.json()["job_id"] != job_id
    assert fresh.json()["params"] == form and fresh.json()["bypass_cache"] is True
    wait_finished(client, fresh.json()["job_id"])
    assert lines(runs) == [job_id, fresh.json()["job_id"]]

    bad = client.post("/api/submit", json={**form, "bypass_cache": "yes"})
    assert (bad.status_code, bad.json()["field"]) == (422, "bypass_cache")
    # The REST envelope still works on the same route.
    echo = client.post("/api/submit", json={"task": "echo", "params": {"a": 1}})
    assert echo.status_code == 202 and echo.json()["task"] == "echo"
    assert len(all_jobs(client)) == 3
