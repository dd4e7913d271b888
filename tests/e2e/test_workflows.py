"""Workflows end to end through a real `scholarsource serve`, on both stores: a chain of
steps created in one request runs in order and streams its events; cancelling it cancels
every unfinished step; bad bodies are refused with nothing written; it completes through a
kill -9 of the pool; and with API keys, nothing of another tenant can be named."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx
import pytest

from scholarsource.client import Client, chain, chord, sig
from tests.e2e.jobs_api import all_jobs
from tests.e2e.keyring import KEYS, as_key, make_key
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def create(client: httpx.Client, steps: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.post("/api/workflows", json={"steps": steps})
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def three_steps(seconds: float = 0.0) -> dict[str, Any]:
    """validate -> extract -> report, each adding its digit to its parent's result."""
    return {"validate": {"task": "add", "params": {"digit": 1, "seconds": seconds}},
            "extract": {"task": "add", "params": {"digit": 2, "seconds": seconds},
                        "after": ["validate"], "priority": 5},
            "report": {"task": "add", "params": {"digit": 3}, "after": ["extract"]}}


def wait_final(client: httpx.Client, workflow_id: str, timeout: float = 30) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/workflows/{workflow_id}").json()
        return body if body["final"] else None

    return wait_until(final, timeout, message=f"workflow {workflow_id} to end")


@pytest.mark.both_backends
def test_a_chain_runs_in_order_streams_and_cancels(serve) -> None:
    # `hold` ignores a cancel: a short cancel grace kills its slot in 0.5 s, not 10.
    server = serve(slots=2, env={"SCHOLARSOURCE_CANCEL_GRACE": "0.5"})
    client = server.client()
    made = create(client, three_steps())
    assert set(made["steps"]) == {"validate", "extract", "report"}
    done = wait_final(client, made["id"])
    assert done["status"] == "succeeded"
    assert done["steps"]["report"]["result"] == 123  # the order it ran in
    assert done["steps"]["report"]["after"] == ["extract"]
    assert done["progress"] == {"done": 3, "total": 3, "fraction": 1.0}
    job = client.get(f"/api/jobs/{made['steps']['extract']}").json()
    assert (job["workflow_id"], job["step"], job["priority"]) == (made["id"], "extract", 5)
    # The stream of a finished workflow replays every step's events, then ends.
    frames = client.get(f"/api/workflows/{made['id']}/events").text.split("\n\n")
    data = [json.loads(line[6:]) for f in frames for line in f.split("\n")
            if line.startswith("data: ")]
    assert {d["step"] for d in data if d.get("status") == "succeeded"} == {
        "validate", "extract", "report"}

    # The client's canvas: a chord's callback gets every result of its group (fan-in).
    with Client(server.url) as jobs:
        run = jobs.workflow(chain(sig("add", {"digit": 1}),
                                  chord([sig("add", {"digit": d}) for d in (2, 3, 4)],
                                        sig("add", {"digit": 5}, name="sum"))))
        assert set(run.steps) == {"add", "add.2", "add.3", "add.4", "sum"}
        wait_until(lambda: jobs.get_workflow(run.id).final, 30, message="the chord")
        # 12 + 13 + 14 = 39, then the callback's digit.
        assert jobs.get_workflow(run.id).result("sum") == 395

    # Cancelling cancels every step not yet final: the waiting ones and the running one.
    pidfile = server.data_dir / "hold.pid"
    slow = create(client, {"hold": {"task": "hold", "params": {"pidfile": str(pidfile)}},
                           "next": {"task": "add", "after": ["hold"]},
                           "last": {"task": "add", "after": ["next"]}})
    wait_until(pidfile.exists, 15, message="the hold step to run")
    answer = client.post(f"/api/workflows/{slow['id']}/cancel")
    assert answer.status_code == 202, answer.text
    assert answer.json()["cancel_requested"] == 1
    ended = wait_final(client, slow["id"])
    assert ended["status"] == "cancelled"
    assert {s["status"] for s in ended["steps"].values()} == {"cancelled"}
    assert client.post("/api/workflows/NoSuchWorkflow00000000/cancel").status_code == 404
    assert client.get("/api/workflows/NoSuchWorkflow00000000").status_code == 404

    # The list: newest first, each with its status and how many steps it has and has done.
    listed = client.get("/api/workflows").json()["workflows"]
    assert [(w["id"], w["status"], w["steps"], w["done"]) for w in listed] == [
        (slow["id"], "cancelled", 3, 3), (run.id, "succeeded", 5, 5),
        (made["id"], "succeeded", 3, 3)]
    assert [w["id"] for w in client.get("/api/workflows?limit=1").json()["workflows"]] == [
        slow["id"]]
    for bad in ("limit=0", "limit=201", "limit=x", "colour=red"):
        refused = client.get(f"/api/workflows?{bad}")
        assert (refused.status_code, refused.json()["error"]) == (422, "invalid_request"), bad


@pytest.mark.both_backends
def test_bad_workflows_are_refused_whole_and_write_nothing(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    cycle = create(client, {"a": {"task": "add", "after": ["c"]},
                            "b": {"task": "add", "after": ["a"]},
                            "c": {"task": "add", "after": ["b"]}}, 422)
    assert cycle["error"] == "workflow_cycle" and len(cycle["steps"]) == 4
    assert create(client, {"a": {"task": "add", "after": ["a"]}}, 422)["error"] == \
        "workflow_cycle"
    unknown_step = create(client, {"a": {"task": "add", "after": ["nope"]}}, 422)
    assert (unknown_step["error"], unknown_step["step"]) == ("unknown_step", "a")
    unknown_task = create(client, {"a": {"task": "add"}, "b": {"task": "nosuch"}}, 422)
    assert (unknown_task["error"], unknown_task["step"]) == ("unknown_task", "b")
    assert create(client, {"a": {"task": "add", "delay": 5},
                           "b": {"task": "add", "delay": 5, "after": ["a"]}},
                  422)["step"] == "b"
    too_many = create(client, {f"s{i}": {"task": "noop"} for i in range(501)}, 422)
    assert too_many["error"] == "too_many_steps"
    assert client.post("/api/workflows", json={"steps": []}).status_code == 422
    assert all_jobs(client) == []


@pytest.mark.both_backends
def test_a_workflow_completes_through_a_kill_9_of_the_pool(serve) -> None:
    server = serve(slots=2)
    client = server.client()
    made = create(client, three_steps(seconds=0.4))
    extract = made["steps"]["extract"]
    wait_until(lambda: client.get(f"/api/jobs/{extract}").json()["status"] == "running", 15,
               message="the middle step to run")
    pool = server.health()["processes"]["pool"]
    os.kill(pool, signal.SIGKILL)
    wait_until(lambda: server.health()["processes"]["pool"] not in (None, pool), 20,
               message="a new pool")
    done = wait_final(client, made["id"])
    assert done["status"] == "succeeded"
    assert done["steps"]["report"]["result"] == 123
    attempts = client.get(f"/api/jobs/{extract}").json()["attempts_history"]
    assert attempts[0]["error_code"] == "pool_died" and attempts[-1]["outcome"] == "succeeded"


@pytest.mark.both_backends
def test_another_tenants_jobs_and_workflows_cannot_be_named(serve) -> None:
    server = serve(slots=1, env=KEYS)
    ours = as_key(server, make_key(server, "acme"))
    theirs = as_key(server, make_key(server, "globex"))
    their_job = theirs.post("/api/jobs", json={"task": "noop"}).json()["id"]
    their_flow = create(theirs, {"a": {"task": "noop"}})["id"]
    # Their job as a parent answers exactly as an id nobody has.
    answers = []
    for parent in (their_job, "NoSuchJob0000000000000"):
        for route, body in (("/api/jobs", {"task": "noop", "depends_on": [parent]}),
                            ("/api/workflows", {"steps": {"a": {"task": "noop",
                                                                "depends_on": [parent]}}})):
            response = ours.post(route, json=body)
            assert response.status_code == 422, response.text
            answers.append(response.json()["message"].replace(parent, "ID"))
    assert answers[:2] == answers[2:] and {a.split(":")[0] for a in answers} == {
        "depends_on", "steps.a.depends_on"}
    assert ours.get("/api/jobs").json()["jobs"] == []
    # Their workflow is not found, not forbidden, and cancelling it changes nothing.
    for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
        response = ours.request(method, f"/api/workflows/{their_flow}{path}")
        assert response.status_code == 404, (method, path, response.text)
    # Nor listed: each tenant lists its own.
    assert ours.get("/api/workflows").json()["workflows"] == []
    assert [w["id"] for w in theirs.get("/api/workflows").json()["workflows"]] == [their_flow]
    assert wait_final(theirs, their_flow)["status"] == "succeeded"
