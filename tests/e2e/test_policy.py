"""Which queued job may start, through a real `scholarsource serve`: queue caps,
reservations, pauses across a restart, rate limits and concurrency keys (issue 11)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_CONFIG
from tests.conftest import Server
from tests.e2e.jobs_api import query, wait_finished
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

Interval = tuple[float, float]


def _config(tmp_path: Path, text: str) -> tuple[str, str]:
    path = tmp_path / "scholarsource.toml"
    path.write_text(text)
    return ("--config", str(path))


def _submit(client: httpx.Client, task: str, params: dict[str, Any] | None = None,
            **fields: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json={"task": task, "params": params or {}, **fields})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _finished(client: httpx.Client, jobs: list[dict[str, Any]],
              timeout: float = 30) -> list[dict[str, Any]]:
    return [wait_finished(client, job["id"], timeout) for job in jobs]


def _span(job: dict[str, Any]) -> Interval:
    assert job["status"] == "succeeded", job
    return job["started_at"], job["finished_at"]


def _overlap(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _queue(client: httpx.Client, name: str) -> dict[str, Any]:
    queues: list[dict[str, Any]] = client.get("/api/queues").json()["queues"]
    return next(q for q in queues if q["name"] == name)


def test_a_capped_queue_runs_one_at_a_time_and_holds_back_no_other_queue(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=3, args=_config(tmp_path, "[queues.capped]\nmax_running = 1\n"))
    client = server.client()
    # The capped queue's jobs come first and outrank the others: still they never wait.
    capped = [_submit(client, "sleep", {"seconds": 0.4}, queue="capped", priority=10)
              for _ in range(4)]
    other = [_submit(client, "sleep", {"seconds": 0.2}, queue="other") for _ in range(4)]
    capped_spans = [_span(job) for job in _finished(client, capped)]
    other_spans = [_span(job) for job in _finished(client, other)]
    for a, b in itertools.combinations(capped_spans, 2):
        assert not _overlap(a, b), "two jobs of the capped queue ran at once"
    # Two slots are free of the capped queue: the other queue's jobs start beside its first
    # job, and all four are done (two rounds of 0.2 s) before its last one starts.
    capped_spans.sort()
    assert sum(_overlap(capped_spans[0], span) for span in other_spans) >= 2
    assert max(end for _, end in other_spans) < capped_spans[3][0]
    listed = _queue(client, "capped")
    assert (listed["max_running"], listed["reserved"], listed["queued"]) == (1, 0, 0)


def test_a_reserved_slot_starts_its_queue_at_once_during_a_flood(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=3, args=_config(tmp_path, "[queues.urgent]\nreserved = 1\n"))
    client = server.client()
    flood = [_submit(client, "sleep", {"seconds": 3}) for _ in range(8)]
    wait_until(lambda: _queue(client, "default")["running"] == 2,
               message="the flood to fill every unreserved slot")
    urgent = _submit(client, "sleep", {"seconds": 0.1}, queue="urgent")
    done = wait_finished(client, urgent["id"], timeout=10)
    # It started in the reserved slot, not after a flood job's 3 s.
    assert done["wait_time"] < 1.5, done
    assert _queue(client, "default")["running"] == 2
    for job in flood:
        client.post(f"/api/jobs/{job['id']}/cancel")


@pytest.mark.both_backends
def test_a_pause_survives_a_restart_and_resume_runs_the_jobs(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    args = _config(tmp_path, "[queues.work]\n")
    server = serve(slots=2, args=args)
    client = server.client()
    paused = CliRunner().invoke(main, ["queues", "pause", "work", "--url", server.url])
    assert (paused.exit_code, paused.output) == (0, "queue work paused\n")
    held = [_submit(client, "noop", queue="work") for _ in range(3)]
    # The pool has claimed since: a later job of another queue ran.
    wait_finished(client, _submit(client, "noop")["id"])
    assert _queue(client, "work")["queued"] == 3
    server.stop()

    server = serve(slots=2, args=args)
    client = server.client()
    assert _queue(client, "work")["paused"] is True
    wait_finished(client, _submit(client, "noop")["id"])
    assert {client.get(f"/api/jobs/{j['id']}").json()["status"] for j in held} == {"queued"}
    assert client.post("/api/queues/work/resume").json() == {"name": "work", "paused": False}
    assert {j["status"] for j in _finished(client, held)} == {"succeeded"}
    listed = CliRunner().invoke(main, ["queues", "--url", server.url])
    assert listed.exit_code == 0 and "work" in listed.output and "paused" not in listed.output


def test_a_rate_limit_holds_across_the_pool_and_holds_back_no_other_task(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=3, args=_config(tmp_path, '[tasks.noop]\nrate_limit = "10/s"\n'))
    client = server.client()
    limited = [_submit(client, "noop") for _ in range(60)]
    wait_until(lambda: client.get("/api/queues").json()["rates"][0]["throttled"],
               message="the noop task to be throttled")
    other = _submit(client, "echo", {"x": 1})
    # It starts while the backlog of the limited task still needs seconds.
    assert wait_finished(client, other["id"], timeout=5)["wait_time"] < 2.0
    starts = sorted(job["started_at"] for job in _finished(client, limited, timeout=30))
    # No one-second window starts more than 10: any 11 consecutive starts span >= 1 s.
    for first, eleventh in zip(starts, starts[10:], strict=False):
        assert eleventh - first >= 1.0, (first, eleventh)
    assert 5.0 <= starts[-1] - starts[0] < 10.0  # about 6 s
    [rate] = client.get("/api/queues").json()["rates"]
    assert (rate["task"], rate["rate_limit"]) == ("noop", "10/s")


@pytest.mark.both_backends
def test_a_concurrency_key_runs_one_job_per_user_and_other_users_beside_it(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=3)
    client = server.client()
    jobs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for user in ("A", "B") * 5:
        jobs[user].append(_submit(client, "sleep", {"seconds": 0.3}, concurrency_key=user,
                                  concurrency_limit=1))
    assert jobs["A"][0]["concurrency_key"] == "A"
    spans = {user: [_span(job) for job in _finished(client, mine)]
             for user, mine in jobs.items()}
    for mine in spans.values():
        for a, b in itertools.combinations(mine, 2):
            assert not _overlap(a, b), "two jobs of one key ran at once"
    assert any(_overlap(a, b) for a in spans["A"] for b in spans["B"])


def test_bad_limits_are_refused_with_their_code_and_change_nothing(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=2)
    client = server.client()
    before = client.get("/api/queues").json()
    answer = client.post("/api/queues/nosuch/pause")
    assert (answer.status_code, answer.json()["error"]) == (422, "unknown_queue")
    for fields in ({"concurrency_key": "u", "concurrency_limit": 0},
                   {"concurrency_key": "", "concurrency_limit": 1},
                   {"concurrency_limit": 2}):
        answer = client.post("/api/jobs", json={"task": "noop", **fields})
        assert (answer.status_code, answer.json()["error"]) == (422, "invalid_request"), fields
    assert client.get("/api/jobs").json()["jobs"] == []
    assert client.get("/api/queues").json() == before
    assert not any(q["paused"] for q in before["queues"])


def test_reservations_beyond_the_slots_stop_the_server_at_boot(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=2, wait=False, args=_config(
        tmp_path, "[queues.a]\nreserved = 2\n[queues.b]\nreserved = 1\n"))
    assert server.proc.wait(timeout=30) == EXIT_CONFIG
    assert "the reservations must fit the slots" in server.log()
    assert not (tmp_path / "data" / "scholarsource.db").exists()


def test_a_tasks_table_naming_no_task_stops_the_pool_at_boot(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=1, wait=False, args=_config(
        tmp_path, '[tasks.nosuch]\nrate_limit = "1/s"\n'))
    assert server.proc.wait(timeout=60) != 0
    assert "[tasks.nosuch] names no registered task" in server.log()


@pytest.mark.both_backends
def test_caps_and_keys_hold_while_turns_take_in_late_endings(serve, tmp_path: Path) -> None:
    # Short jobs on three slots: turns write endings that came in while they waited on the
    # store and start the freed slots at once. A capped queue and a concurrency key still
    # never run two at a time, and every job's log lines are kept.
    server = serve(slots=3, args=_config(tmp_path, "[queues.capped]\nmax_running = 1\n"))
    client = server.client()
    capped, keyed, other = [], [], []
    for i in range(15):
        capped.append(_submit(client, "narrate", {"lines": 2}, queue="capped"))
        keyed.append(_submit(client, "narrate", {"lines": 1}, concurrency_key="K",
                             concurrency_limit=1))
        other.append(_submit(client, "echo", {"value": i}, queue="other"))
        other.append(_submit(client, "narrate", {"lines": 1}, queue="other"))
    for group in (capped, keyed):
        spans = [_span(job) for job in _finished(client, group, 60)]
        assert not [(a, b) for a, b in itertools.combinations(spans, 2) if _overlap(a, b)]
    assert all(job["status"] == "succeeded" for job in _finished(client, other, 60))
    for group, lines in ((capped, 2), (keyed, 1), (other[1::2], 1)):
        for job in group:
            assert query(server, "SELECT count(*) FROM job_events WHERE job_id = ? "
                         "AND kind = 'log'", job["id"]) == [(lines,)]
