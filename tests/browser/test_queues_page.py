"""The dashboard's queue table, in a real browser: pause and resume a queue by its button."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.conftest import Server
from tests.e2e.jobs_api import submit, wait_finished


def test_pause_and_resume_a_queue_from_its_row(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    page.goto(f"{dashboard.url}/dashboard/queues")
    row = page.locator('#queues tr[data-queue="default"]')
    expect(row).to_contain_text("active")
    row.locator('[data-action="pause"]').click()
    expect(page.locator("#flash")).to_have_text("queue default paused")
    expect(row).to_contain_text("paused")
    held = submit(client, "noop")
    expect(row.locator("td").nth(1)).to_have_text("1")  # queued, held by the pause
    row.locator('[data-action="resume"]').click()
    expect(page.locator("#flash")).to_have_text("queue default resumed")
    assert wait_finished(client, held["id"])["status"] == "succeeded"
    expect(row).to_contain_text("active")
