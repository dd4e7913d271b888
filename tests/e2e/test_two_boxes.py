"""Two boxes on one machine (issue 12 §3): two real `scholarsource serve` processes, each with
its own port and data directory (so its own box id), sharing one throwaway PostgreSQL
database. Jobs run exactly once across them, a box killed with kill -9 has its jobs finished
by the other once their leases expire, a schedule both boxes carry fires once per fire time,
and a task's rate limit holds over the starts of both."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scholarsource.store.owner import box_of
from tests.conftest import Server
from tests.e2e.jobs_api import wait_finished
from tests.helpers import wait_until
from tests.pgcluster import PgCluster, drop_database, fresh_database

pytestmark = pytest.mark.e2e

Boxes = Callable[..., tuple[Server, Server]]
# A short lease: a dead box's jobs come back after ~3 s, and the sweep runs every second.
LEASE = 3.0


@pytest.fixture
def database(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, migrated database for this test alone, dropped at the end."""
    url = fresh_database(pg_cluster)
    try:
        yield url
    finally:
        drop_database(pg_cluster, url)


@pytest.fixture
def two_boxes(database: str, serve: Callable[..., Server], tmp_path: Path) -> Boxes:
    """Factory: two servers on `database`, data directories box-a and box-b (so two box
    ids), TEST_BOX a and b; `config` is the text of a TOML file both read. The database
    comes first, so that it outlives the servers at teardown."""

    def start(*, slots: int = 2, config: str = "", env: dict[str, str] | None = None
              ) -> tuple[Server, Server]:
        args: tuple[str, ...] = ()
        if config:
            path = tmp_path / "scholarsource.toml"
            path.write_text(config)
            args = ("--config", str(path))
        settings = {"SCHOLARSOURCE_DATABASE": database, **(env or {})}
        # TEST_BOX reaches the slots: the `stamp` task writes which box ran it.
        a, b = (serve(slots=slots, workers=1, data_dir=tmp_path / f"box-{name}",
                      env={**settings, "TEST_BOX": name}, args=args, wait=False)
                for name in ("a", "b"))
        for server in (a, b):
            server.wait_healthy(60)
        return a, b

    return start


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one statement on the shared database, as the boxes see it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def submit_split(servers: tuple[Server, Server], count: int, body: dict[str, Any]
                 ) -> list[str]:
    """Submit `count` copies of `body`, half to each box, from one thread per box."""
    ids: list[list[str]] = [[], []]

    def send(i: int) -> None:
        with httpx.Client(base_url=servers[i].url, timeout=30) as client:
            for _ in range(count // 2 + (count % 2 if i == 0 else 0)):
                response = client.post("/api/jobs", json=body)
                assert response.status_code == 202, response.text
                ids[i].append(response.json()["id"])

    threads = [threading.Thread(target=send, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids[0]) + len(ids[1]) == count, "a submit thread failed"
    return ids[0] + ids[1]


def executions(path: Path) -> list[tuple[str, int, str]]:
    """(job, attempt, box) of each time a body ran, from the lines `stamp` appends as it
    starts."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [(job, int(attempt), box) for job, attempt, box in map(str.split, lines)]


def statuses(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT status, count(*) FROM jobs GROUP BY 1"))


def test_600_jobs_submitted_to_both_boxes_run_exactly_once(
        two_boxes: Boxes, database: str, tmp_path: Path) -> None:
    a, b = two_boxes(slots=2)
    runs = tmp_path / "runs.log"
    # 600: as many as it takes for both boxes to claim from the one queue at once, and to
    # race each other for the same rows (2000 took twice as long and showed nothing more).
    ids = submit_split((a, b), 600, {"task": "stamp", "params": {"path": str(runs)}})
    wait_until(lambda: statuses(database) == {"succeeded": 600}, 60, interval=0.2,
               message="600 jobs to succeed")
    ran = executions(runs)
    times = collections.Counter(job for job, _, _ in ran)
    assert sorted(times) == sorted(ids), "a job never ran, or a stranger ran"
    assert set(times.values()) == {1}, [job for job, n in times.items() if n > 1][:10]
    # Both boxes took work from the one queue.
    by_box = collections.Counter(box for _, _, box in ran)
    assert set(by_box) == {"a", "b"} and min(by_box.values()) >= 100, by_box


def test_kill_9_of_one_box_its_jobs_finish_on_the_other_after_the_lease(
        two_boxes: Boxes, database: str, tmp_path: Path) -> None:
    a, b = two_boxes(slots=2, env={"SCHOLARSOURCE_LEASE_SECONDS": str(LEASE)})
    runs = tmp_path / "runs.log"
    ids = submit_split((a, b), 12, {"task": "stamp", "max_attempts": 3, "params": {
        "path": str(runs), "seconds": 1.0}})
    box_a = box_of(str(a.data_dir))

    def running_on_a() -> list[str]:
        return [job for (job,) in query(
            database, "SELECT id FROM jobs WHERE status = 'running' AND "
                      "left(owner, length(%s)) = %s", box_a, box_a)]

    wait_until(running_on_a, 20, message="box A to run jobs")
    a.kill_tree()
    killed_at = time.time()
    # What A's rows still show as running after the kill is exactly what it held.
    held = running_on_a()
    assert held, "A finished its jobs before the kill"
    other = b.client()
    # Each job A held finishes on B within the lease plus a few seconds, as a crash.
    deadline = LEASE + 5
    for job in [wait_finished(other, job_id, timeout=deadline + 5) for job_id in held]:
        assert job["status"] == "succeeded", job
        assert (job["attempts"], job["crashes"]) == (2, 1), job
        assert job["attempts_history"][0]["error_code"] == "lease_expired", job
        assert job["finished_at"] - killed_at < deadline, (job["finished_at"] - killed_at)
    # Nothing is lost: every job ends, each attempt ran once, and B ran the rescues.
    everything = [wait_finished(other, job_id, timeout=30) for job_id in ids]
    assert {job["status"] for job in everything} == {"succeeded"}
    ran = executions(runs)
    assert len(ran) == len(set(ran)), "an attempt ran twice"
    for job in everything:
        attempts = [(attempt, box) for job_id, attempt, box in ran if job_id == job["id"]]
        assert [n for n, _ in attempts] == list(range(1, job["attempts"] + 1)), attempts
        if job["id"] in held:
            assert attempts == [(1, "a"), (2, "b")], attempts


def test_a_schedule_on_both_boxes_fires_once_per_fire_time(
        two_boxes: Boxes, database: str) -> None:
    two_boxes(slots=1, config='[[schedules]]\nname = "beat"\ntask = "noop"\nevery = "1s"\n')
    start = time.time()

    def fires() -> dict[float, int]:
        return dict(query(database, "SELECT scheduled_for, count(*) FROM jobs WHERE "
                                    "schedule = 'beat' AND NOT triggered GROUP BY 1"))

    wait_until(lambda: sum(1 for at in fires() if at > start) >= 5, 20, message="five fires")
    end = time.time()
    counts = fires()
    assert set(counts.values()) == {1}, counts  # never two jobs for one fire
    # One job per second over the window, but perhaps the last, not committed yet.
    due = math.floor(end) - math.floor(start)
    window = [at for at in counts if start < at <= end]
    assert due - 1 <= len(window) <= due, (due, sorted(window))


def test_a_rate_limit_holds_across_both_boxes(
        two_boxes: Boxes, database: str, tmp_path: Path) -> None:
    a, b = two_boxes(slots=2, config='[tasks.stamp]\nrate_limit = "5/s"\n')
    runs = tmp_path / "runs.log"
    submit_split((a, b), 30, {"task": "stamp", "params": {"path": str(runs)}})
    wait_until(lambda: statuses(database) == {"succeeded": 30}, 20, interval=0.2,
               message="30 jobs to succeed")
    starts = sorted(at for (at,) in query(database, "SELECT started_at FROM jobs"))
    # No one-second window starts more than 5: any 6 consecutive starts span >= 1 s.
    for first, sixth in zip(starts, starts[5:], strict=False):
        assert sixth - first >= 1.0, (first, sixth)
    assert {box for _, _, box in executions(runs)} == {"a", "b"}, "one box ran every job"
