"""GET /metrics: valid Prometheus text, and counters that sum across API workers and the
pool."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.jobs_api import submit, wait_finished
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def test_metrics_sum_every_process_and_read_the_rest_at_scrape_time(serve) -> None:
    server = serve(slots=2, workers=2)
    wait_until(lambda: len(server.health()["processes"]["api"]) == 2, message="two workers")
    # A connection per request, so that both API workers answer some of them.
    with httpx.Client(base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0),
                      timeout=30) as client:
        ids = [submit(client, "noop")["id"] for _ in range(40)]
        for job_id in ids:
            wait_finished(client, job_id)
        assert client.post("/api/jobs", json={"task": "nope"}).status_code == 422
        wait_finished(client, submit(client, "fail")["id"])

    samples = scrape(server.url)
    posts = samples[("scholarsource_http_requests_total",
                     (("method", "POST"), ("route", "/api/jobs"), ("status", "202")))]
    assert posts == 41  # summed over both workers' files, counted once each
    assert samples[("scholarsource_rejected_requests_total", (("reason", "unknown_task"),))] == 1
    assert samples[("scholarsource_jobs_started_total", (("task", "noop"),))] == 40
    assert samples[("scholarsource_jobs_ended_total",
                    (("outcome", "succeeded"), ("task", "noop")))] == 40
    assert samples[("scholarsource_job_run_seconds_count", (("task", "noop"),))] == 40
    assert samples[("scholarsource_queue_jobs", (("queue", "default"), ("status", "dead")))] == 1
    assert samples[("scholarsource_jobs_ended_total", (("outcome", "dead"), ("task", "fail")))] == 1
    assert samples[("scholarsource_slots", (("state", "total"),))] == 2
    assert samples[("scholarsource_database_bytes", (("file", "database"),))] > 0
    for role in ("master", "api", "pool", "slots"):
        assert samples[("scholarsource_process_resident_memory_bytes", (("role", role),))] > 0

    os.kill(server.health()["processes"]["pool"], signal.SIGKILL)
    wait_until(lambda: scrape(server.url).get(("scholarsource_pool_restarts_total", ())) == 1,
               20, message="the restart to be counted")
    # The dead pool's counts stay in the sum.
    assert scrape(server.url)[("scholarsource_jobs_started_total", (("task", "noop"),))] == 40


def test_the_oldest_queued_job_age_is_what_an_autoscaler_reads(serve, tmp_path) -> None:
    config = tmp_path / "scholarsource.toml"
    config.write_text("[queues.work]\n")
    server = serve(slots=1, args=("--config", str(config)))
    client = server.client()
    assert client.post("/api/queues/work/pause").status_code == 200
    response = client.post("/api/jobs", json={"task": "noop", "queue": "work"})
    assert response.status_code == 202
    wait_finished(client, submit(client, "noop")["id"])  # the default queue runs meanwhile

    def age(queue: str) -> float | None:
        return scrape(server.url).get(("scholarsource_queue_oldest_age_seconds",
                                       (("queue", queue),)))

    wait_until(lambda: (age("work") or 0) >= 1.0, message="the held job to age")
    assert age("default") is None  # nothing live there: no series, as for the depth
    assert scrape(server.url)[("scholarsource_queue_jobs",
                               (("queue", "work"), ("status", "queued")))] == 1
    client.post("/api/queues/work/resume")
    wait_until(lambda: age("work") in (None, 0.0), message="the queue to drain")
