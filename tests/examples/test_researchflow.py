"""examples/researchflow end to end: its own config, tasks and client, through a real serve.
What the analysis team (which had planned on Temporal) relies on: one request creates the
whole analysis, the steps run in order with the three extracts side by side, they pass a
backlog of batch work by priority, a failed extract is retried after a backoff, the report
downloads byte for byte, a dataset that fails validation cancels the rest (parent_failed),
and cancelling an analysis mid-way cancels every step not yet done."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scholarsource import Client
from tests.e2e.jobs_api import all_jobs
from tests.examples.conftest import Example, load_module
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

EXTRACTS = ("demographics", "outcomes", "costs")
# attempts_history's ended_at is written a moment after the attempt ended in the pool.
WRITE_DELAY = 0.05


def _steps(client: httpx.Client, steps: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: client.get(f"/api/jobs/{job_id}").json() for name, job_id in steps.items()}


def _analysis_runs_in_order_past_the_backlog_and_retries(run: Example, tmp_path: Path,
                                                         client: httpx.Client) -> None:
    saved = tmp_path / "report.html"
    out = run.run_client("--dataset", "trial-042", "--rows", "1200", "--backlog", "12",
                         "--out", str(saved))
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["status"] == "succeeded", out.stdout
    steps = _steps(client, summary["steps"])
    assert sorted(steps) == ["analyse", "costs", "demographics", "outcomes", "report",
                             "validate"]
    assert {step["status"] for step in steps.values()} == {"succeeded"}

    # The order, from the jobs' own times.
    validate, analyse, report = steps["validate"], steps["analyse"], steps["report"]
    extracts = [steps[name] for name in EXTRACTS]
    for extract in extracts:
        assert extract["started_at"] >= validate["finished_at"], extract
        assert analyse["started_at"] >= extract["finished_at"], extract
    assert report["started_at"] >= analyse["finished_at"]
    # Side by side: the two extracts that did not fail ran at the same time.
    demographics, costs = steps["demographics"], steps["costs"]
    assert demographics["started_at"] < costs["finished_at"]
    assert costs["started_at"] < demographics["finished_at"]
    # analyse got all three extracts (ctx.parent_results).
    assert analyse["result"]["tables"] == sorted(EXTRACTS)

    # The retry: outcomes failed its first attempt and ran again after its backoff (1 s,
    # jittered down to half at most).
    outcomes = steps["outcomes"]
    first, second = outcomes["attempts_history"]
    assert first["outcome"] == "failed" and "timed out (on purpose" in first["error"]
    assert second["outcome"] == "succeeded" and outcomes["backoff_base"] == 1.0
    assert second["started_at"] - first["ended_at"] >= 0.5 - WRITE_DELAY

    # Priority: the analysis started while the batch backlog was still queued.
    # The backlog is low-priority work: the last of it may still run once the workflow ends.
    def finished_backlog() -> list[dict[str, Any]] | None:
        jobs = all_jobs(client, task="reindex")
        return jobs if all(job["final"] for job in jobs) else None

    backlog = wait_until(finished_backlog, 30, message="the backlog to finish")
    assert len(backlog) == 12 and {job["status"] for job in backlog} == {"succeeded"}
    assert min(job["created_at"] for job in backlog) < validate["created_at"]
    assert sum(job["started_at"] > validate["started_at"] for job in backlog) >= 3, backlog

    # The report, byte for byte: the client's download, the server's record, the file.
    (artifact,) = report["artifacts"]
    downloaded = saved.read_bytes()
    assert hashlib.sha256(downloaded).hexdigest() == artifact["sha256"] == \
        summary["report"]["sha256"]
    assert client.get(artifact["url"]).content == downloaded
    (on_disk,) = (run.data_dir / "artifacts" / report["id"]).glob("*/report.html")
    assert on_disk.read_bytes() == downloaded
    assert downloaded.startswith(b"<!doctype html>") and b"trial-042" in downloaded


def _failed_validation_cancels_the_rest(run: Example, client: httpx.Client) -> None:
    out = run.run_client("--dataset", "empty-trial", "--rows", "0", "--backlog", "0",
                         expect=1)
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["status"] == "failed" and "report" not in summary
    steps = _steps(client, summary["steps"])
    assert steps["validate"]["status"] == "dead"
    assert "has no rows to analyse" in steps["validate"]["error"]
    for name in (*EXTRACTS, "analyse", "report"):
        assert (steps[name]["status"], steps[name]["error_code"]) == \
            ("cancelled", "parent_failed"), steps[name]
        assert steps[name]["started_at"] is None
    assert "validate: dead (ValueError" in out.stdout


def _cancelling_mid_way_cancels_every_unfinished_step(run: Example) -> None:
    flows = load_module("researchflow", "client.py")
    with Client(run.server.url) as client:
        # Long extracts: the cancel lands while they run.
        made = client.workflow(flows.analysis("trial-043", 800, extract_seconds=30))

        def extracting() -> bool:
            steps = client.get_workflow(made.id).raw["steps"]
            return sum(steps[name]["status"] == "running" for name in EXTRACTS) >= 2

        wait_until(extracting, 15, message="the extracts to run")
        client.cancel_workflow(made.id)
        wait_until(lambda: client.get_workflow(made.id).final, 15,
                   message="the workflow to end")
        flow = client.get_workflow(made.id)
    steps = flow.raw["steps"]
    assert flow.status == "cancelled"
    assert steps["validate"]["status"] == "succeeded"
    assert {steps[name]["status"] for name in (*EXTRACTS, "analyse", "report")} == \
        {"cancelled"}, steps
    assert steps["analyse"]["started_at"] is None and steps["report"]["started_at"] is None


@pytest.mark.both_backends
def test_the_analysis_service(example: Callable[..., Example], tmp_path: Path) -> None:
    run = example("researchflow")
    with httpx.Client(base_url=run.server.url, timeout=30) as client:
        _analysis_runs_in_order_past_the_backlog_and_retries(run, tmp_path, client)
        _failed_validation_cancels_the_rest(run, client)
    _cancelling_mid_way_cancels_every_unfinished_step(run)
