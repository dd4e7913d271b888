"""The HTTP contract through a real server: bad input, error format, frontend routes."""

from __future__ import annotations

import pytest

from tests.e2e.jobs_api import all_jobs, wait_finished

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}

BAD_SUBMITS = [
    # (description, request kwargs, status, error code)
    ("malformed JSON", {"content": b'{"task": "noop",', "headers": JSON}, 400, "malformed_json"),
    ("not UTF-8", {"content": b'{"task": "\xff"}', "headers": JSON}, 400, "malformed_json"),
    ("no content type", {"content": b'{"task": "noop"}'}, 415, "unsupported_media_type"),
    ("form content type", {"data": {"task": "noop"}}, 415, "unsupported_media_type"),
    ("body over the limit", {"json": {"task": "echo", "params": {"x": "a" * 3000}}}, 413,
     "payload_too_large"),
    ("array body", {"json": ["noop"]}, 422, "invalid_request"),
    ("no task", {"json": {"params": {}}}, 422, "invalid_request"),
    ("unknown task", {"json": {"task": "os.system"}}, 422, "unknown_task"),
    ("task not a string", {"json": {"task": 7}}, 422, "invalid_request"),
    ("params not an object", {"json": {"task": "echo", "params": [1]}}, 422,
     "invalid_request"),
    ("priority a string", {"json": {"task": "noop", "priority": "high"}}, 422,
     "invalid_request"),
    ("priority a bool", {"json": {"task": "noop", "priority": True}}, 422, "invalid_request"),
    ("priority a fraction", {"json": {"task": "noop", "priority": 1.5}}, 422,
     "invalid_request"),
    ("priority out of range", {"json": {"task": "noop", "priority": 10**9}}, 422,
     "invalid_request"),
    ("bad queue name", {"json": {"task": "noop", "queue": "../etc"}}, 422, "invalid_request"),
    ("max_attempts zero", {"json": {"task": "noop", "max_attempts": 0}}, 422,
     "invalid_request"),
    ("negative timeout", {"json": {"task": "noop", "timeout": -1}}, 422, "invalid_request"),
    ("unknown field", {"json": {"task": "noop", "taks": "x"}}, 422, "invalid_request"),
]


@pytest.mark.both_backends
def test_bad_input_gets_its_status_and_code_and_changes_nothing(serve) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_MAX_BODY_BYTES": "2048"})
    client = server.client()
    before = all_jobs(client)
    for path in ("/api/jobs", "/api/submit"):
        for description, kwargs, status, code in BAD_SUBMITS:
            response = client.post(path, **kwargs)
            assert response.status_code == status, (path, description, response.text)
            body = response.json()
            if (path, description) == ("/api/submit", "no task"):
                code = "compat_task_not_set"  # the frontend's own form, with no compat_task
            assert body["error"] == code, (path, description, body)
            assert body["message"] and "Traceback" not in response.text
    assert all_jobs(client) == before

    for method, path, status, code in [
        ("GET", "/api/jobs/no-such-job", 404, "not_found"),
        ("GET", "/api/status/no-such-job", 404, "not_found"),
        ("POST", "/api/jobs/no-such-job/cancel", 404, "not_found"),
        ("POST", "/api/cancel/no-such-job", 404, "not_found"),
        ("GET", "/api/jobs/no-such-job/events", 404, "not_found"),
        ("GET", "/api/nothing-here", 404, "not_found"),
        ("DELETE", "/api/jobs", 405, "method_not_allowed"),
        ("GET", "/api/jobs?limit=0", 422, "invalid_request"),
        ("GET", "/api/jobs?limit=lots", 422, "invalid_request"),
        ("GET", "/api/jobs?status=sleeping", 422, "invalid_request"),
        ("GET", "/api/jobs?cursor=abc", 422, "invalid_request"),
        ("GET", "/api/jobs?cursor=%C2%B2", 422, "invalid_request"),  # '²' passes isdigit()
        ("GET", "/api/jobs?limit=%D9%A3", 422, "invalid_request"),  # an Arabic-Indic 3
        ("GET", "/api/jobs?cursor=33104547662347717516089568", 422, "invalid_request"),
        ("GET", "/api/jobs?colour=red", 422, "invalid_request"),
    ]:
        response = client.request(method, path)
        assert (response.status_code, response.json()["error"]) == (status, code), path
    assert all_jobs(client) == before
    assert client.post("/api/jobs", json={"task": "noop"}).status_code == 202  # still serving


def test_a_declared_oversize_body_is_refused_before_reading(serve) -> None:
    client = serve(slots=1, env={"SCHOLARSOURCE_MAX_BODY_BYTES": "1KiB"}).client()
    response = client.post("/api/jobs", content=b"x" * 5000, headers=JSON)
    assert response.status_code == 413 and response.json()["limit"] == 1024


def test_frontend_routes_behave_like_the_rest_ones(serve) -> None:
    client = serve(slots=1).client()
    submitted = client.post("/api/submit", json={"task": "echo", "params": {"n": 1}})
    assert submitted.status_code == 202
    job = submitted.json()
    assert job["job_id"] == job["id"] and job["status"] == "queued"

    done = wait_finished(client, job["id"])
    status = client.get(f"/api/status/{job['id']}").json()
    assert status.pop("job_id") == job["id"]
    assert status == client.get(f"/api/jobs/{job['id']}").json() == done
    assert status["result"] == {"n": 1}

    long = client.post("/api/submit", json={"task": "sleep", "params": {"seconds": 30}}).json()
    queued = client.post("/api/submit", json={"task": "noop"}).json()
    cancelled = client.post(f"/api/cancel/{queued['job_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    client.post(f"/api/cancel/{long['job_id']}")
    assert wait_finished(client, long["id"])["status"] == "cancelled"
    again = client.post(f"/api/cancel/{job['id']}")
    assert again.status_code == 409 and again.json()["error"] == "already_finished"


def test_job_ids_are_random_not_counters(serve) -> None:
    client = serve(slots=1).client()
    ids = [client.post("/api/jobs", json={"task": "noop"}).json()["id"] for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(len(i) >= 22 and not i.isdigit() for i in ids)


def test_odd_but_valid_input_is_accepted(serve) -> None:
    client = serve(slots=1).client()
    job = client.post("/api/jobs", json={"task": "noop", "priority": 5.0, "max_attempts": 2.0,
                                         "timeout": None}).json()
    # A null timeout is the default one: no job runs without a bound.
    assert (job["priority"], job["max_attempts"], job["timeout"]) == (5, 2, 3600.0)
    listed = client.get("/api/jobs", params={"status": "", "task": "", "cursor": ""})
    assert listed.status_code == 200 and listed.json()["jobs"][0]["id"] == job["id"]
    for bad in ("²".encode(), b"99999999999999999999999"):
        events = client.get(f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": bad})
        assert (events.status_code, events.json()["error"]) == (422, "invalid_request")
    allowed = client.request("DELETE", "/api/jobs")
    assert allowed.status_code == 405
    assert set(allowed.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    spec = client.get("/api/openapi.json").json()
    variants = {variant["properties"]["task"]["const"]: variant
                for variant in spec["components"]["schemas"]["Submit"]["oneOf"]}
    assert variants["noop"]["properties"]["params"]["additionalProperties"] is False
    assert variants["sleep"]["properties"]["params"]["properties"]["seconds"] == {
        "type": ["number"], "minimum": 0, "maximum": 86400.0}
    assert variants["fetch"]["required"] == ["task", "params"]  # url is required
    assert variants["noop"]["properties"]["timeout"]["maximum"] == 7 * 86400.0
    assert variants["echo"]["properties"]["params"]["description"] == (
        "At most 1048576 bytes of JSON, lists and objects nested at most 32 levels deep.")
