"""A real server's log, in each format: every process's lines, and one access line per
request with the path only."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import submit, wait_finished

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-in-the-query"


def _exercise(server: Server) -> str:
    """Run one job, make one request with a secret in its query string, stop; the log."""
    client = server.client()
    wait_finished(client, submit(client, "noop")["id"])
    wait_finished(client, submit(client, "chatty")["id"])
    assert client.get(f"/api/health?token={SECRET}").status_code == 200
    assert server.stop() == 0
    log: str = server.log()
    assert SECRET not in log
    return log


def test_json_logs_are_one_object_per_line_from_every_process(serve) -> None:
    log = _exercise(serve(slots=1, env={"SCHOLARSOURCE_LOG_FORMAT": "json",
                                        "SCHOLARSOURCE_ACCESS_LOG": "true"}))
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    for entry in entries:
        assert {"time", "level", "logger", "message", "pid", "role"} <= set(entry), entry
    assert {e["role"] for e in entries} == {"master", "api", "pool", "slot"}
    assert any(e["logger"] == "sample_tasks" and e["role"] == "slot" for e in entries)
    jobs = [e for e in entries if e["logger"] == "scholarsource.jobs"]
    assert {(e["role"], e["message"]) for e in jobs} == {
        ("api", "job queued"), ("pool", "job running"), ("pool", "job succeeded")}
    ended = [e for e in jobs if e["message"] == "job succeeded"]
    assert len(ended) == 2 and all(
        {"job_id", "task", "queue", "attempt", "duration", "outcome"} <= set(e) for e in ended)
    assert not any("params" in e or "result" in e for e in jobs)
    assert {"gunicorn.error", "uvicorn.error", "scholarsource.pool"} <= {e["logger"]
                                                                       for e in entries}
    access = [e for e in entries if e["logger"] == "scholarsource.access"]
    assert {(e["method"], e["path"], e["status"]) for e in access} >= {
        ("POST", "/api/jobs", 202), ("GET", "/api/health", 200)}
    assert all(e["role"] == "api" and e["client"] == "127.0.0.1" for e in access)


def test_text_logs_name_the_role_and_put_request_fields_after_the_message(serve) -> None:
    log = _exercise(serve(slots=1, env={"SCHOLARSOURCE_ACCESS_LOG": "true"}))
    line = re.compile(r"^\S+ \S+ \S+ \[\d+\] \[(master|api|pool|slot)\] \[[A-Z]+\] [\w.]+: ")
    assert all(line.match(text) for text in log.splitlines() if text.strip()), log
    assert re.search(r"scholarsource\.access: request method=POST path=/api/jobs status=202 "
                     r"duration_ms=[\d.]+ client=127\.0\.0\.1$", log, re.M)
