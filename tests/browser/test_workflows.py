"""The workflow pages in a real browser: the tree puts each step under its parents, a step's
status changes live without a reload, a fan-out's children fold into one row, Cancel
cancels every unfinished step, and the job page shows a job's relatives."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Server
from tests.e2e.jobs_api import submit
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def create(client: httpx.Client, steps: dict[str, object]) -> dict[str, str]:
    response = client.post("/api/workflows", json={"steps": steps})
    assert response.status_code == 201, response.text
    made: dict[str, str] = response.json()["steps"]
    return {"id": response.json()["id"], **made}


def test_steps_sit_under_their_parents_and_change_live(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    gate = dashboard.data_dir / "gate"
    ids = create(client, {
        "open": {"task": "narrate", "params": {"gate": str(gate), "lines": 1}},
        "left": {"task": "add", "after": ["open"]},
        "right": {"task": "add", "after": ["open"]},
        "join": {"task": "add", "after": ["left", "right"]}})
    page.goto(f"{dashboard.url}/dashboard/workflows/{ids['id']}")
    step = lambda name: page.locator(f'.step[data-id="{ids[name]}"]')  # noqa: E731
    expect(step("open")).to_have_attribute("data-status", "running")
    expect(page.locator("#status")).to_have_attribute("data-status", "running")
    # Each step under its parent; one with two parents under the later one, naming both.
    under = lambda parent, child: page.locator(  # noqa: E731
        f'li:has(> .step[data-id="{ids[parent]}"]) > ul > li > .step[data-id="{ids[child]}"]')
    for parent, child in (("open", "left"), ("open", "right"), ("right", "join")):
        expect(under(parent, child)).to_have_count(1)
    expect(page.locator("#steps > li > .step")).to_have_count(1)  # one root
    expect(step("join").locator(".after")).to_have_text("after left, right")
    expect(step("join")).to_have_attribute("data-status", "waiting")
    expect(step("join").get_by_role("link")).to_have_attribute(
        "href", f"/dashboard/jobs/{ids['join']}")

    page.evaluate("window.__same_page = true")
    gate.touch()
    expect(step("join")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#status")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#progress-text")).to_have_text("4 / 4 steps done")
    expect(page.locator("#cancel")).to_be_hidden()
    assert page.evaluate("window.__same_page") is True  # live: no reload

    page.goto(f"{dashboard.url}/dashboard/workflows")
    expect(page.locator(f'#workflows tr[data-id="{ids["id"]}"]')).to_have_attribute(
        "data-status", "succeeded")


def test_a_fan_out_folds_and_cancel_ends_every_unfinished_step(page: Page,
                                                              dashboard: Server) -> None:
    client = dashboard.client()
    root = submit(client, "fan_out", n=8, pause=60)["id"]  # a workflow named by its root
    steps = wait_until(lambda: (body := client.get(f"/api/workflows/{root}").json()).get(
        "progress", {}).get("total") == 10 and body["steps"], 15,
        message="the fan-out's 8 children and its continuation")
    pieces = [s["id"] for s in steps.values() if s["task"] == "piece"]
    gather = next(s["id"] for s in steps.values() if s["task"] == "gather")

    page.goto(f"{dashboard.url}/dashboard/workflows/{root}")
    fold = page.locator('.fold[data-task="piece"]')
    expect(fold.locator("summary .task")).to_have_text("piece × 8")
    expect(fold.locator(".step")).to_have_count(0)  # closed: not even built
    fold.locator("summary").click()
    expect(fold.locator(".step")).to_have_count(8)
    expect(page.locator(f'li:has(> .step[data-id="{root}"]) > ul > li > '
                        f'.step[data-id="{gather}"]')).to_have_count(1)

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    expect(page.locator("#flash")).to_contain_text("cancelled")
    expect(page.locator("#status")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    body = client.get(f"/api/workflows/{root}").json()
    assert {s["id"]: s["status"] for s in body["steps"].values()} == {
        root: "succeeded", gather: "cancelled", **{p: "cancelled" for p in pieces}}

    # The job page: the root lists what it submitted; a piece names its root and workflow.
    page.goto(f"{dashboard.url}/dashboard/jobs/{root}")
    expect(page.locator('#family tr[data-relation="submitted"]')).to_have_count(9)
    page.goto(f"{dashboard.url}/dashboard/jobs/{gather}")
    expect(page.locator(f'#family tr[data-relation="submitted by"][data-id="{root}"]')
           ).to_have_count(1)
    expect(page.locator('#family tr[data-relation="after"]')).to_have_count(8)
    expect(page.locator('#family tr[data-relation="workflow"] a')).to_have_attribute(
        "href", f"/dashboard/workflows/{root}")
