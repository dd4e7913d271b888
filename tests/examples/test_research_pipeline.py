"""examples/research_pipeline end to end: its own config, tasks and client, through a real
serve. What the research team relies on: one collection fans out one download per paper from
inside its job, each paper is fetched exactly once, the publishers' rate limit holds in every
window, no slot waits while the downloads run, the synthesis runs once after all of them with
every result and PDF, and the user sees the progress live."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.jobs_api import all_jobs
from tests.examples.conftest import EXAMPLES, Example
from tests.examples.test_slides import _most_at_once

pytestmark = pytest.mark.e2e

PAPERS = 24
# The example allows 100 downloads a minute; the test runs the same config at 6 a second,
# so that the limit bites within seconds: 24 fetches need at least four 1 s windows.
RATE = 6
SLOTS = 4


def _config(tmp_path: Path) -> Path:
    """The example's own scholarsource.toml with only the rate limit scaled down."""
    text = (EXAMPLES / "research_pipeline" / "scholarsource.toml").read_text()
    assert text.count('rate_limit = "100/m"') == 1 and f"slots = {SLOTS}\n" in text
    config = tmp_path / "research_pipeline.toml"
    config.write_text(text.replace('rate_limit = "100/m"', f'rate_limit = "{RATE}/s"'))
    return config


@pytest.mark.both_backends
def test_the_pipeline_fetches_every_paper_once_under_the_limit_then_synthesises_once(
        example: Callable[..., Example], tmp_path: Path) -> None:
    run = example("research_pipeline", "--config", str(_config(tmp_path)))
    out = run.run_client("--papers", str(PAPERS), "--topic", "sleep and memory")
    summary = json.loads(out.stdout.splitlines()[-1])
    result = summary["result"]

    with httpx.Client(base_url=run.server.url, timeout=30) as client:
        jobs = all_jobs(client)
        fetches = [client.get(f"/api/jobs/{job['id']}").json()
                   for job in jobs if job["task"] == "fetch_pdf"]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_task.setdefault(job["task"], []).append(job)
    assert sorted(by_task) == ["collect", "fetch_pdf", "synthesise"]
    (collect,), (synthesis,) = by_task["collect"], by_task["synthesise"]

    # Every paper fetched exactly once: one job per URL, one attempt each, one download each.
    urls = sorted(job["params"]["url"] for job in fetches)
    assert len(fetches) == PAPERS and len(set(urls)) == PAPERS
    assert {(job["status"], job["attempts"]) for job in fetches} == {("succeeded", 1)}
    assert {job["parent_id"] for job in fetches} == {collect["id"]}
    downloads = (run.data_dir / "fetches.log").read_text().splitlines()
    assert sorted(line.split()[3] for line in downloads) == urls

    # The rate limit: no second (any window, not only whole ones) saw more than RATE starts.
    starts = sorted(job["started_at"] for job in fetches)
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t < start + 1.0) <= RATE, starts

    # No slot held while the downloads ran: collect had ended before the last of them
    # started, the synthesis started after the last one ended, and the downloads had every
    # slot at some moment.
    spans = [(job["started_at"], job["finished_at"]) for job in fetches]
    assert collect["status"] == "succeeded" and collect["finished_at"] < starts[-1]
    assert collect["result"] == {"continued_by": synthesis["id"]}
    assert synthesis["started_at"] >= max(end for _, end in spans)
    assert _most_at_once(spans) == SLOTS, spans

    # The synthesis ran once, with every fetch's result and PDF.
    assert (synthesis["status"], synthesis["attempts"]) == ("succeeded", 1)
    assert sorted(synthesis["depends_on"]) == sorted(job["id"] for job in fetches)
    assert result["papers"] == PAPERS and result["sources"] == urls
    assert result["pages"] == sum(job["result"]["pages"] for job in fetches)
    assert result["pdf_bytes_read"] == sum(job["artifacts"][0]["size"] for job in fetches)
    assert summary["synthesis_md"].startswith(
        f"# sleep and memory: a synthesis of {PAPERS} papers")

    # The progress reached the client live: collect's own reports, then each paper's success
    # on the workflow's stream.
    assert summary["seen"]["collect_progress"] == 2
    assert summary["seen"]["fetched"] == PAPERS
    assert f"fetched {PAPERS} of {PAPERS} papers" in out.stdout
    assert "synthesis: succeeded" in out.stdout
