"""Dependencies between jobs end to end through a real `scholarsource serve`, on both stores:
a chain runs in order with each parent's result in `ctx.parent_results`, a dead parent
cancels the tree below it, on_parent_failure = "run" runs anyway, and a bad depends_on is
refused with nothing written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs, wait_finished

pytestmark = pytest.mark.e2e


def post(client: httpx.Client, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.both_backends
def test_chains_failures_and_bad_parents_through_a_real_server(serve) -> None:
    server = serve(slots=2)
    client = server.client()
    # A chain of 3, each step adding a digit to its parent's result.
    first = post(client, {"task": "add", "params": {"digit": 1}})
    second = post(client, {"task": "add", "params": {"digit": 2}, "depends_on": [first["id"]]})
    third = post(client, {"task": "add", "params": {"digit": 3},
                          "depends_on": [second["id"]]})
    assert third["depends_on"] == [second["id"]]
    assert wait_finished(client, third["id"])["result"] == 123
    # A parent already succeeded counts at once.
    late = post(client, {"task": "add", "params": {"digit": 4},
                         "depends_on": [third["id"], first["id"]]})
    assert wait_finished(client, late["id"])["result"] == 1244

    # A dead parent cancels its children and theirs, each naming its parent; a child that
    # runs anyway runs with the parent's result as None.
    doomed = post(client, {"task": "fail", "max_attempts": 1})
    child = post(client, {"task": "add", "depends_on": [doomed["id"]]})
    grandchild = post(client, {"task": "add", "depends_on": [child["id"]]})
    anyway = post(client, {"task": "add", "params": {"digit": 7},
                           "depends_on": [doomed["id"]], "on_parent_failure": "run"})
    for job, parent in ((child, doomed), (grandchild, child)):
        ended = wait_finished(client, job["id"])
        assert (ended["status"], ended["error_code"]) == ("cancelled", "parent_failed")
        assert parent["id"] in ended["error"]
        events = client.get(f"/api/jobs/{job['id']}/events")
        assert parent["id"] in events.text
    assert wait_finished(client, anyway["id"])["result"] == 7

    # Bad input: 422 with a stable code, nothing written.
    before = len(all_jobs(client))
    unknown = post(client, {"task": "add", "depends_on": ["NoSuchJob0000000000000"]}, 422)
    assert unknown["error"] == "unknown_parent"
    assert post(client, {"task": "add", "depends_on": "x"}, 422)["field"] == "depends_on"
    assert post(client, {"task": "add", "depends_on": [first["id"]], "delay": 5},
                422)["field"] == "depends_on"
    assert post(client, {"task": "add", "on_parent_failure": "maybe"},
                422)["field"] == "on_parent_failure"
    batch = client.post("/api/jobs/batch", json={"jobs": [
        {"task": "add"}, {"task": "add", "depends_on": ["NoSuchJob0000000000000"]}]})
    assert batch.status_code == 422 and batch.json()["error"] == "unknown_parent"
    assert len(all_jobs(client)) == before
