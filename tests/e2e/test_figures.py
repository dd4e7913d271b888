"""/metrics and /api/stats show the same queue figures, on SQLite and on PostgreSQL: the depth
of each queue by state, the age of its oldest queued job, and the database's size."""

from __future__ import annotations

import time

import pytest

from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.e2e.test_metrics import scrape
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.both_backends
def test_metrics_and_stats_agree_on_depths_oldest_age_and_size(serve) -> None:
    # No grace at the stop: the long sleep need not delay the teardown.
    server = serve(slots=1, env={"SCHOLARSOURCE_GRACE_PERIOD": "0"})
    client = server.client()
    wait_finished(client, submit(client, "fail")["id"])  # a dead letter in "default"
    held = client.post("/api/jobs", json={"task": "sleep", "queue": "slow",
                                          "params": {"seconds": 30}}).json()
    wait_running(client, held["id"])
    waiting = [client.post("/api/jobs", json={"task": "noop", "queue": "slow"}).json()
               for _ in range(2)]
    client.post("/api/jobs", json={"task": "noop", "queue": "other"})
    # Past one second, so that an age measured from the submit cannot round to nothing.
    wait_until(lambda: time.time() - waiting[0]["created_at"] > 1.5, message="some age")

    stats = client.get("/api/stats").json()
    samples = scrape(server.url)
    ages = {q["name"]: q["oldest_queued_age"] for q in client.get("/api/queues").json()["queues"]}
    assert stats["queues"]["slow"] == {"scheduled": 0, "waiting": 0, "queued": 2, "running": 1,
                                       "retrying": 0, "dead": 0}
    assert stats["queues"]["other"]["queued"] == 1 and stats["queues"]["default"]["dead"] == 1
    for queue, by_status in stats["queues"].items():
        for status, n in by_status.items():
            assert samples[("scholarsource_queue_jobs",
                            (("queue", queue), ("status", status)))] == n, (queue, status)
    oldest = samples[("scholarsource_queue_oldest_age_seconds", (("queue", "slow"),))]
    assert oldest == pytest.approx(ages["slow"], abs=1.0) and oldest > 1.5
    assert oldest <= time.time() - waiting[0]["created_at"]
    assert samples[("scholarsource_queue_oldest_age_seconds", (("queue", "default"),))] == 0
    assert samples[("scholarsource_database_bytes", (("file", "database"),))] > 0
    assert stats["database"]["size_bytes"] > 0
    # The pool's heartbeat writes between the two reads; a page or two, never more.
    assert samples[("scholarsource_database_bytes", (("file", "database"),))] == pytest.approx(
        stats["database"]["size_bytes"], rel=0.05)
