"""The overview's schedules table in a real browser: pause, resume and run now."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Server

pytestmark = pytest.mark.e2e

NIGHTLY = '[[schedules]]\nname = "nightly"\ntask = "noop"\ncron = "30 2 * * *"\n'


def test_pause_resume_and_run_a_schedule_from_the_overview(
        page: Page, serve: Callable[..., Server], tmp_path: Path) -> None:
    config = tmp_path / "scholarsource.toml"
    config.write_text(NIGHTLY)
    server = serve(slots=1, workers=1, args=("--config", str(config)))
    page.goto(f"{server.url}/dashboard")
    row = page.locator('#schedules tr[data-schedule="nightly"]')
    expect(row.locator("td").nth(2)).to_have_text("30 2 * * * (UTC)")
    expect(row.locator('[data-field="next"]')).not_to_have_text("paused")

    row.locator('[data-action="pause"]').click()
    expect(row.locator('[data-field="next"]')).to_have_text("paused")
    row.locator('[data-action="resume"]').click()
    expect(row.locator('[data-field="next"]')).not_to_have_text("paused")

    row.locator('[data-action="trigger"]').click()
    expect(row.locator(".badge")).to_have_text("succeeded")
    job_id = row.locator("a.id").inner_text()
    assert server.client().get(f"/api/jobs/{job_id}").json()["schedule"] == "nightly"
    row.locator("td a").first.click()  # the schedule's name: its jobs
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator('#filters input[name="schedule"]')).to_have_value("nightly")
