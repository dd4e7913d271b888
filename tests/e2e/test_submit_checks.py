"""What a submit may carry, checked at the door through a real server: params against the
task's signature, bounds on every built-in task, finite timeouts, the built-ins exposed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from scholarsource.exitcodes import EXIT_POOL_BOOT
from tests.conftest import server_env
from tests.e2e.jobs_api import all_jobs, submit, wait_finished, write_queued

pytestmark = pytest.mark.e2e


def refused(client: httpx.Client, body: dict[str, Any], code: str) -> dict[str, Any]:
    """POST the body; assert a 422 with `code` and that no job was written."""
    before = len(all_jobs(client))
    response = client.post("/api/jobs", json=body)
    assert (response.status_code, response.json()["error"]) == (422, code), response.text
    assert len(all_jobs(client)) == before
    answer: dict[str, Any] = response.json()
    return answer


def test_params_are_checked_at_submit_not_left_to_fail_at_run_time(serve) -> None:
    client = serve(slots=1).client()
    # Issue 9: both answered 202, then failed at run time using up their retries.
    wrong_type = refused(client, {"task": "sleep", "params": {"seconds": "two"}},
                         "invalid_params")
    assert wrong_type["param"] == "seconds" and "must be number, not string" in \
        wrong_type["message"]
    unknown = refused(client, {"task": "noop", "params": {"txt": "hello"}}, "invalid_params")
    assert unknown["param"] == "txt" and "unknown param" in unknown["message"]
    missing = refused(client, {"task": "record", "params": {"seconds": 1}}, "invalid_params")
    assert (missing["param"], missing["message"]) == ("path", "params.path: required")
    typo = refused(client, {"task": "sleeep"}, "unknown_task")
    assert typo["message"].endswith("did you mean 'sleep'?")
    assert "did you mean" not in refused(client, {"task": "zzz"}, "unknown_task")["message"]
    # What fits still runs; **params takes anything; 2.0 reaches an int param as 2.
    assert wait_finished(client, submit(client, "echo", txt="hello")["id"])["result"] == {
        "txt": "hello"}
    job = submit(client, "cpu", loops=2.0)
    assert job["params"] == {"loops": 2}
    assert wait_finished(client, job["id"])["result"] == {"loops": 2}


def test_no_client_can_hold_a_slot_or_the_memory_without_bounds(serve) -> None:
    client = serve(slots=1).client()
    # Issue 10 §7: accepted with timeout null, holding the slot for ever.
    assert refused(client, {"task": "sleep", "params": {"seconds": 1e300}},
                   "invalid_params")["param"] == "seconds"
    assert refused(client, {"task": "memory", "params": {"mb": 1500}},
                   "invalid_params")["param"] == "mb"
    for task, params in (("cpu", {"seconds": 86401}), ("cpu", {"loops": 10**12}),
                         ("fetch", {"url": "http://example.com", "timeout": 1e9}),
                         ("fetch", {"url": "http://example.com", "max_bytes": 10**12}),
                         ("crash", {"code": 256}), ("sleep", {"seconds": -1})):
        assert refused(client, {"task": task, "params": params}, "invalid_params")
    assert submit(client, "noop")["timeout"] == 3600.0  # default_timeout, never null
    too_long = refused(client, {"task": "noop", "timeout": 7 * 86400 + 1}, "invalid_request")
    assert too_long["field"] == "timeout"
    assert client.post("/api/jobs", json={"task": "noop", "timeout": 7 * 86400}
                       ).status_code == 202


def test_params_too_deep_too_large_or_unrenderable_are_refused(serve) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_MAX_PARAMS_BYTES": "1KiB",
                                 "SCHOLARSOURCE_DEFAULT_TIMEOUT": "60"})
    client = server.client()
    pool = server.health()["pool"]["pid"]
    # Issue 10 §1: 500 deep answered 202 and crashed the pool; ~990 deep answered 500.
    for depth in (33, 500, 1000, 50_000):
        body = '{"task": "echo", "params": {"a": ' + "[" * depth + "]" * depth + "}}"
        response = client.post("/api/jobs", content=body,
                               headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()["error"]) == (422, "params_too_deep")
    # Issue 10 §2: answered 500 with the row committed, and every listing 500 after it.
    for value in ("NaN", "1e400", "-Infinity", '"\\ud800"'):
        body = '{"task": "echo", "params": {"a": ' + value + "}}"
        response = client.post("/api/submit", content=body,
                               headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()["error"]) == (
            422, "invalid_json_value"), value
    assert all_jobs(client) == [] and all_jobs(client, task="echo") == []
    assert server.health()["pool"]["pid"] == pool
    big = refused(client, {"task": "echo", "params": {"a": "x" * 1100}}, "params_too_large")
    assert big["limit"] == 1024
    # Measured as stored: escaped non-ASCII counts six bytes a character.
    refused(client, {"task": "echo", "params": {"a": "é" * 200}}, "params_too_large")
    assert submit(client, "echo", a="x" * 900)["timeout"] == 60.0


def test_builtin_tasks_safe_hides_cpu_memory_and_crash(serve) -> None:
    # The default (tests/conftest.py sets "all" for the other tests).
    client = serve(slots=1, env={"SCHOLARSOURCE_BUILTIN_TASKS": "safe"}).client()
    for name in ("crash", "memory", "cpu"):
        refused(client, {"task": name}, "unknown_task")
    assert wait_finished(client, submit(client, "sleep", seconds=0)["id"])["status"] == \
        "succeeded"
    variants = client.get("/api/openapi.json").json()["components"]["schemas"]["Submit"]
    names = {variant["properties"]["task"]["const"] for variant in variants["oneOf"]}
    assert {"noop", "sleep", "echo", "fetch", "fail", "record"} <= names
    assert names.isdisjoint({"crash", "memory", "cpu"})


def test_a_hidden_builtin_queued_earlier_does_not_run(serve) -> None:
    # A cpu job queued while the server exposed every built-in, then a restart with "safe":
    # the slot refuses it as the API would, instead of burning a core.
    server = serve(slots=1, env={"SCHOLARSOURCE_BUILTIN_TASKS": "safe"})
    job_id = write_queued(server, "cpu", '{"seconds": 30}')
    client = server.client()
    submit(client, "noop")  # wakes the pool
    ended = wait_finished(client, job_id)
    assert (ended["status"], ended["error_code"]) == ("dead", "task_error")
    assert "no task named 'cpu'" in ended["error"]


def test_a_task_timeout_above_max_timeout_stops_the_server_at_boot(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scholarsource", "serve", "--bind", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data")],
        env=server_env(SCHOLARSOURCE_MAX_TIMEOUT="3600"), capture_output=True, timeout=60,
        text=True)
    assert result.returncode == EXIT_POOL_BOOT
    assert "'patient' declares timeout=7200, above max_timeout (3600)" in result.stderr
