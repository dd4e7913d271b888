"""The built-in tasks do real work through a real server."""

from __future__ import annotations

import pytest

from tests.e2e.jobs_api import submit, wait_finished

pytestmark = pytest.mark.e2e


def test_builtin_tasks(serve) -> None:
    server = serve(slots=2, env={"SCHOLARSOURCE_FETCH_ALLOW_PRIVATE": "true"})
    client = server.client()

    def run(task: str, **params: object) -> dict[str, object]:
        job = client.post("/api/jobs", json={"task": task, "params": params})
        assert job.status_code == 202, job.text
        return wait_finished(client, job.json()["id"])

    assert run("noop")["result"] is None
    assert run("echo", a=[1, 2], b={"c": None})["result"] == {"a": [1, 2], "b": {"c": None}}
    slept = run("sleep", seconds=0.2)
    assert slept["status"] == "succeeded" and slept["result"]["slept"] >= 0.2
    burned = run("cpu", seconds=0.2)
    assert burned["status"] == "succeeded" and burned["result"]["loops"] > 0
    assert run("cpu", loops=25)["result"] == {"loops": 25}  # fixed work, however long

    fetched = run("fetch", url=f"{server.url}/api/openapi.json")
    assert fetched["status"] == "succeeded", fetched["error"]
    result = fetched["result"]
    assert result["status"] == 200 and result["bytes"] > 1000 and not result["truncated"]
    assert result["headers"]["content-type"] == "application/json"
    cut = run("fetch", url=f"{server.url}/api/openapi.json", max_bytes=100)["result"]
    assert cut["truncated"] and cut["bytes"] == 100

    unreachable = run("fetch", url="http://127.0.0.1:9/", timeout=2)
    assert unreachable["status"] == "dead" and "ConnectError" in unreachable["error"]
    exited = run("exits", code=3)  # a test task: sys.exit(3) fails the attempt, no more
    assert (exited["status"], exited["error"]) == ("dead", "SystemExit: 3")
    failed = run("fail")
    assert (failed["status"], failed["error"]) == ("dead", "TaskFailed: failed on purpose")
    # A param the task does not take is refused at submit, not left to fail at run time.
    wrong = client.post("/api/jobs", json={"task": "sleep", "params": {"minutes": 1}})
    assert (wrong.status_code, wrong.json()["param"]) == (422, "minutes")


def test_a_result_over_max_result_bytes_fails_the_attempt(serve) -> None:
    client = serve(slots=1, env={"SCHOLARSOURCE_MAX_RESULT_BYTES": "1KiB"}).client()
    small = submit(client, "big", size=100)
    large = submit(client, "big", size=5000)
    assert wait_finished(client, small["id"])["result"] == "x" * 100
    failed = wait_finished(client, large["id"])
    assert failed["status"] == "dead" and failed["result"] is None
    assert failed["error"].startswith("result_too_large: 5002 bytes")


def test_fetch_refuses_private_addresses_by_default(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    port = server.url.rsplit(":", 1)[1]
    # IPv6 forms that carry 127.0.0.1: mapped, IPv4-compatible, NAT64, 6to4.
    embedded = [f"http://[{form}]:{port}/api/health" for form in
                ("::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::")]
    for url in (f"{server.url}/api/health", "http://169.254.169.254/latest/meta-data/",
                "http://[::1]:9/", "http://10.0.0.1/", "file:///etc/passwd", *embedded):
        job = submit(client, "fetch", url=url)
        ended = wait_finished(client, job["id"])
        assert ended["status"] == "dead", url
        assert ended["error"].startswith("FetchRefused: "), (url, ended["error"])
