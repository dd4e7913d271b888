"""Fan-out from inside a task end to end through a real `scholarsource serve`, on both
stores: ctx.submit children that run while no slot waits for them, ctx.continue_with that
gathers their results once, a retry that does not double them, a child naming an unknown
task, cancelling the root, a kill -9 of the pool in the middle of a fan-out, and children
past max_queued. One server for all of it, in turn."""

from __future__ import annotations

import itertools
import json
import os
import signal
from typing import Any

import httpx
import pytest

from scholarsource.store.fanout import CONTINUATION, child_id
from tests.conftest import Server
from tests.e2e.jobs_api import wait_finished
from tests.e2e.test_deps import post
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def children(client: httpx.Client, root: str) -> list[dict[str, Any]]:
    """The jobs of the root's tree but the root, as the store lists its workflow (every
    child's workflow_id is the root's id)."""
    jobs = client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
    return [job for job in jobs if job["workflow_id"] == root and job["id"] != root]


def finished_tree(client: httpx.Client, root: dict[str, Any],
                  timeout: float = 30) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait for the root, then its continuation (its result names it); returns the
    continuation and the children it waited for."""
    ended = wait_finished(client, root["id"], timeout)
    assert ended["status"] == "succeeded", ended
    then = wait_finished(client, ended["result"]["continued_by"], timeout)
    return then, [job for job in children(client, root["id"]) if job["id"] != then["id"]]


def overlapped(jobs: list[dict[str, Any]]) -> bool:
    """Whether two of the jobs ran at the same moment (from their started_at/finished_at)."""
    spans = sorted((job["started_at"], job["finished_at"]) for job in jobs)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def fan_out_of_fifty(client: httpx.Client) -> None:
    root = post(client, {"task": "fan_out", "params": {"n": 50, "pause": 0.05}})
    then, kids = finished_tree(client, root)
    # The continuation ran once, after all 50, with their 50 results.
    assert then["result"] == {"count": 50, "expected": 50, "sum": sum(range(50))}
    assert then["attempts"] == 1 and then["parent_id"] == root["id"]
    assert len(kids) == 50 and all(kid["status"] == "succeeded" for kid in kids)
    assert sorted(then["depends_on"]) == sorted(kid["id"] for kid in kids)
    assert then["started_at"] >= max(kid["finished_at"] for kid in kids)
    assert {kid["parent_id"] for kid in kids} == {root["id"]}
    # No slot waited for the children: with 2 slots, two children ran at once.
    assert overlapped(kids)
    # The root is its tree's workflow.
    assert client.get(f"/api/jobs/{root['id']}").json()["workflow_id"] == root["id"]


def unknown_task_fails_the_parent(client: httpx.Client) -> None:
    root = post(client, {"task": "fan_out", "max_attempts": 1,
                         "params": {"n": 3, "child": "no_such_task"}})
    ended = wait_finished(client, root["id"])
    assert ended["status"] == "dead"
    assert "ChildRefused" in ended["error"]
    assert "no task named 'no_such_task' is registered" in ended["error"]
    assert children(client, root["id"]) == []


def retry_does_not_double(client: httpx.Client) -> None:
    root = post(client, {"task": "fan_out", "max_attempts": 2, "backoff_base": 0.05,
                         "params": {"n": 5, "fail_first": True}})
    then, kids = finished_tree(client, root)
    assert client.get(f"/api/jobs/{root['id']}").json()["attempts"] == 2
    assert len(kids) == 5
    assert then["result"] == {"count": 5, "expected": 5, "sum": 10}


def cancel_root_cancels_tree(client: httpx.Client) -> None:
    root = post(client, {"task": "fan_out", "params": {"n": 6, "pause": 30}})
    then_id = wait_finished(client, root["id"])["result"]["continued_by"]
    wait_until(lambda: any(kid["status"] == "running" for kid in children(client, root["id"])),
               10, message="a child to run")
    assert client.post(f"/api/jobs/{root['id']}/cancel").status_code == 200
    wait_until(lambda: all(kid["final"] for kid in children(client, root["id"])), 15,
               message="the tree to be cancelled")
    tree = children(client, root["id"])
    assert len(tree) == 7
    assert {kid["status"] for kid in tree} == {"cancelled"}
    assert client.get(f"/api/jobs/{then_id}").json()["status"] == "cancelled"


def cancel_running_root_cancels_tree(client: httpx.Client) -> None:
    root = post(client, {"task": "fan_out", "params": {"n": 4, "pause": 30, "hold": 30}})
    wait_until(lambda: len(children(client, root["id"])) == 4, 10,
               message="the root's 4 children")
    assert client.post(f"/api/jobs/{root['id']}/cancel").status_code == 202
    ended = wait_finished(client, root["id"])
    # It returned a continuation once cancelled: none is made, and no result points to one.
    assert (ended["status"], ended["result"]) == ("cancelled", None)
    wait_until(lambda: all(kid["final"] for kid in children(client, root["id"])), 15,
               message="the tree to be cancelled")
    assert {kid["status"] for kid in children(client, root["id"])} == {"cancelled"}
    assert len(children(client, root["id"])) == 4
    then = child_id(root["id"], CONTINUATION)
    assert client.get(f"/api/jobs/{then}").status_code == 404


def kill_pool_mid_fan_out(server: Server, client: httpx.Client) -> None:
    # The root submits slowly (3 s): the kill lands while it runs, with some children
    # written and some done; its next attempt submits the same 30 again.
    root = post(client, {"task": "fan_out", "params": {"n": 30, "pause": 0.05,
                                                       "between": 0.1}})
    wait_until(lambda: sum(kid["status"] == "succeeded"
                           for kid in children(client, root["id"])) >= 5, 20,
               message="5 children to finish")
    os.kill(server.health()["processes"]["pool"], signal.SIGKILL)
    then, kids = finished_tree(client, root, timeout=60)
    assert client.get(f"/api/jobs/{root['id']}").json()["attempts"] == 2
    assert then["result"] == {"count": 30, "expected": 30, "sum": sum(range(30))}
    assert then["attempts"] == 1
    assert len(kids) == 30


def children_past_max_queued_are_refused(client: httpx.Client) -> None:
    # max_queued is 60: the root and 59 children; the 6 more go in refused, and the
    # continuation that waits for them is cancelled at once.
    root = post(client, {"task": "fan_out", "params": {"n": 65, "pause": 30}})
    then_id = wait_finished(client, root["id"])["result"]["continued_by"]
    then = wait_finished(client, then_id)
    assert (then["status"], then["error_code"]) == ("cancelled", "parent_failed")
    kids = [kid for kid in children(client, root["id"]) if kid["id"] != then_id]
    refused = [kid for kid in kids if kid["error_code"] == "quota_exceeded"]
    assert len(kids) == 65 and len(refused) == 6
    assert {kid["status"] for kid in refused} == {"cancelled"}
    assert "at most 60 jobs not yet finished" in refused[0]["error"]
    assert client.post(f"/api/jobs/{root['id']}/cancel").status_code == 200
    wait_until(lambda: all(kid["final"] for kid in children(client, root["id"])), 15,
               message="the tree to be cancelled")


def the_tree_streams_as_it_grows(client: httpx.Client) -> None:
    # Its workflow is the root alone until the first child: the stream opened then still
    # follows every child and the continuation as the tasks add them, to the end.
    root = post(client, {"task": "fan_out",
                         "params": {"n": 4, "pause": 0.1, "between": 0.3, "hold": 0.5}})
    alone = client.get(f"/api/workflows/{root['id']}")
    assert alone.status_code == 200 and root["id"] in {
        step["id"] for step in alone.json()["steps"].values()}
    frames = client.get(f"/api/workflows/{root['id']}/events", timeout=60).text
    data = [json.loads(line[len("data: "):]) for line in frames.splitlines()
            if line.startswith("data: ")]
    then_id = wait_finished(client, root["id"])["result"]["continued_by"]
    kids = {kid["id"] for kid in children(client, root["id"])} - {then_id}
    succeeded = {d["job_id"] for d in data if d.get("status") == "succeeded"}
    assert len(kids) == 4 and succeeded == {root["id"], then_id, *kids}
    assert data[-1]["job_id"] == then_id and data[-1]["status"] == "succeeded"


def a_lone_root_cancels_as_its_workflow(client: httpx.Client) -> None:
    root = post(client, {"task": "fan_out", "params": {"n": 0, "hold": 30}})
    wait_until(lambda: client.get(f"/api/jobs/{root['id']}").json()["status"] == "running",
               15, message="the root to run")
    answer = client.post(f"/api/workflows/{root['id']}/cancel")
    assert answer.status_code == 202 and answer.json()["cancel_requested"] == 1, answer.text
    assert wait_finished(client, root["id"])["status"] == "cancelled"


@pytest.mark.both_backends
def test_fan_out_from_inside_a_task_through_a_real_server(serve) -> None:
    server = serve(slots=2, env={"SCHOLARSOURCE_MAX_QUEUED": "60"})
    client = server.client()
    fan_out_of_fifty(client)
    unknown_task_fails_the_parent(client)
    retry_does_not_double(client)
    cancel_root_cancels_tree(client)
    cancel_running_root_cancels_tree(client)
    kill_pool_mid_fan_out(server, client)
    the_tree_streams_as_it_grows(client)
    a_lone_root_cancels_as_its_workflow(client)
    children_past_max_queued_are_refused(client)
