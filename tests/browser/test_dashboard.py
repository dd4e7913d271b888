"""The dashboard in a real browser: overview, progress, cancel, retry, purge, lookup, paging,
and job data that tries to be HTML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Server
from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=1>"


def dead_job(client: httpx.Client, message: str = "failed on purpose") -> dict[str, Any]:
    """A job that ends dead at once: the builtin `fail` task with one attempt."""
    response = client.post("/api/jobs", json={"task": "fail", "params": {"message": message},
                                              "max_attempts": 1})
    assert response.status_code == 202, response.text
    job = wait_finished(client, response.json()["id"])
    assert job["status"] == "dead"
    return job


def test_overview_shows_states_queues_slots_and_a_live_chart(page: Page,
                                                             dashboard: Server) -> None:
    client = dashboard.client()
    response = client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 60},
                                              "queue": "video"})
    sleeper = response.json()["id"]
    wait_running(client, sleeper)
    dead_job(client)
    assert client.post("/api/jobs", json={"task": "noop", "queue": "video",
                                          "delay": 3600}).status_code == 202
    assert client.post("/api/jobs", json={"task": "noop", "queue": "video",
                                          "depends_on": [sleeper]}).status_code == 202

    page.goto(f"{dashboard.url}/dashboard")
    expect(page.locator("#slots-total")).to_have_text("2")
    expect(page.locator("#slots-busy")).to_have_text("1")
    expect(page.locator("#pool-state")).to_have_text("running")
    expect(page.locator('#totals [data-state="running"] .count')).to_have_text("1")
    expect(page.locator('#totals [data-state="dead"] .count')).to_have_text("1")
    expect(page.locator('#totals [data-state="scheduled"] .count')).to_have_text("1")
    expect(page.locator('#totals [data-state="waiting"] .count')).to_have_text("1")
    expect(page.locator("#queues th")).to_have_text(
        ["Queue", "Scheduled", "Waiting", "Queued", "Running", "Retrying", "Dead"])
    video = page.locator('#queues tr[data-queue="video"] td')
    expect(video).to_have_text(["video", "1", "1", "0", "1", "0", "0"])
    expect(page.locator("#live")).to_have_text("live")
    # A page opened just now shows the last 15 minutes at once (the server keeps them):
    # 90 buckets of 10 s, the dead job's among them, and labelled axes.
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-points", "90")
    assert float(chart.get_attribute("data-peak") or 0) > 0
    expect(chart.locator("polyline")).to_have_count(1)
    expect(page.locator("#chart-x")).to_have_text(re.compile("15 min ago.*now", re.S))
    assert page.locator("#chart-y-top").inner_text() not in ("", "–")
    expect(page.locator(".y-title")).to_have_text("jobs/s")
    # The slots view: the slot that runs the sleeper, its process, memory and CPU.
    busy = page.locator(f'#slot-list tr[data-job="{sleeper}"] td')
    expect(busy.nth(3)).to_have_text("sleep")
    expect(busy.nth(1)).to_have_text(re.compile(r"^\d+$"))
    expect(busy.nth(5)).to_have_text(re.compile(r"MB$"))
    expect(busy.nth(6)).to_have_text(re.compile(r"^\d+%$"))  # after two heartbeats
    expect(page.locator("#slot-list tbody tr")).to_have_count(2)
    # The state counts link to the filtered list.
    page.locator('#totals [data-state="dead"]').click()
    expect(page).to_have_url(f"{dashboard.url}/dashboard/jobs?status=dead")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)


def test_a_running_jobs_progress_bar_moves_and_its_events_arrive(page: Page,
                                                                 dashboard: Server) -> None:
    # Record every value the bar takes (setting .value sets the attribute), however fast
    # the job runs compared with the page.
    page.add_init_script("""
        window.__bar = [];
        new MutationObserver((records) => {
            for (const r of records) {
                if (r.target.id === "progress" && r.target.hasAttribute("value")) {
                    window.__bar.push(r.target.value);
                }
            }
        }).observe(document, {subtree: true, attributes: true, attributeFilter: ["value"]});
    """)
    job = submit(dashboard.client(), "report", steps=40)
    page.goto(f"{dashboard.url}/dashboard/jobs/{job['id']}")
    expect(page.locator("#status")).to_have_attribute("data-status", "succeeded")
    values = page.evaluate("() => window.__bar")
    moving = [v for v in values if 0 < v < 1]
    assert len(set(moving)) >= 2, values
    assert values[-1] == 1
    expect(page.locator("#progress-text")).to_have_text("100%")
    expect(page.locator("#result")).to_have_text("40")
    expect(page.locator('#events [data-kind="log"]').first).to_contain_text("step 1")
    expect(page.locator('#events [data-kind="state"]').last).to_contain_text("succeeded")
    expect(page.locator("#live")).to_have_text("ended")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)


def test_cancel_a_running_job_from_its_page(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    job = submit(client, "sleep", seconds=60)
    wait_running(client, job["id"])
    page.goto(f"{dashboard.url}/dashboard/jobs/{job['id']}")
    expect(page.locator("#status")).to_have_attribute("data-status", "running")
    page.locator("#cancel").click()
    expect(page.locator("#flash")).to_have_text("Cancel sent")
    expect(page.locator("#status")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#retry")).to_be_visible()
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"


def test_a_scheduled_job_can_be_cancelled_from_its_page(page: Page,
                                                        dashboard: Server) -> None:
    # The page reads `final` from the job: a scheduled job is not final, so it can be
    # cancelled, and once cancelled it is, so the button goes.
    client = dashboard.client()
    job = client.post("/api/jobs", json={"task": "noop", "delay": 3600}).json()
    page.goto(f"{dashboard.url}/dashboard/jobs/{job['id']}")
    expect(page.locator("#status")).to_have_attribute("data-status", "scheduled")
    page.locator("#cancel").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"


def test_cancel_a_queued_job_from_the_list(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    for _ in range(2):  # fill both slots, so the third job waits
        wait_running(client, submit(client, "sleep", seconds=60)["id"])
    queued = submit(client, "noop")
    page.goto(f"{dashboard.url}/dashboard/jobs?status=queued")
    row = page.locator(f'#jobs tr[data-id="{queued["id"]}"]')
    row.locator('[data-action="cancel"]').click()
    expect(page.locator("#empty")).to_be_visible()  # the filtered list reloads without it
    assert client.get(f"/api/jobs/{queued['id']}").json()["status"] == "cancelled"


def test_retry_a_dead_job_and_retry_all_from_the_dead_letters(page: Page,
                                                              dashboard: Server) -> None:
    client = dashboard.client()
    one, two, three = (dead_job(client) for _ in range(3))
    page.goto(f"{dashboard.url}/dashboard/dead")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    expect(page.locator(f'#jobs tr[data-id="{one["id"]}"]')).to_contain_text(
        "TaskFailed: failed on purpose")
    page.locator(f'#jobs tr[data-id="{one["id"]}"] [data-action="retry"]').click()
    expect(page.locator("#flash")).to_have_text(f"{one['id']} is queued again")
    # `fail` fails again, so the retry shows as a second attempt in the job's history.
    wait_until(lambda: len(client.get(f"/api/jobs/{one['id']}").json()["attempts_history"])
               == 2, 20, message="the retried job to run again")

    wait_finished(client, one["id"])
    page.locator("#retry-all").click()
    expect(page.locator("#flash")).to_have_text("3 dead job(s) queued again")
    for job in (two, three):
        wait_until(lambda job=job: len(client.get(f"/api/jobs/{job['id']}").json()[
            "attempts_history"]) == 2, 20, message="every dead job to run again")


def test_purge_the_dead_letters(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    for _ in range(2):
        dead_job(client)
    page.goto(f"{dashboard.url}/dashboard/dead")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#purge-all").click()
    expect(page.locator("#flash")).to_have_text("2 dead job(s) purged")
    expect(page.locator("#empty")).to_be_visible()
    assert client.get("/api/jobs", params={"status": "dead"}).json()["jobs"] == []


def test_purge_asks_first_and_does_nothing_when_declined(page: Page,
                                                         dashboard: Server) -> None:
    client = dashboard.client()
    dead_job(client)
    page.goto(f"{dashboard.url}/dashboard/dead")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#purge-all").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    assert len(client.get("/api/jobs", params={"status": "dead"}).json()["jobs"]) == 1


def test_lookup_by_id_from_any_page(page: Page, dashboard: Server) -> None:
    job = wait_finished(dashboard.client(), submit(dashboard.client(), "echo", a=1)["id"])
    page.goto(f"{dashboard.url}/dashboard/dead")
    page.locator("#lookup-id").fill(job["id"])
    page.locator("#lookup-id").press("Enter")
    expect(page).to_have_url(f"{dashboard.url}/dashboard/jobs/{job['id']}")
    expect(page.locator("#job-id")).to_have_text(job["id"])
    expect(page.locator("#status")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#params")).to_contain_text('"a": 1')

    page.locator("#lookup-id").fill("no-such-job")
    page.locator("#lookup-id").press("Enter")
    expect(page.locator("#missing")).to_be_visible()
    expect(page.locator("#job")).to_be_hidden()


def test_the_jobs_list_filters_and_pages_without_loading_everything(
        page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    ids = [submit(client, "noop")["id"] for _ in range(55)]
    fail = dead_job(client)
    wait_until(lambda: not client.get("/api/jobs", params={"status": "queued"}).json()["jobs"],
               20, message="the no-ops to run")
    page.goto(f"{dashboard.url}/dashboard/jobs")
    expect(page.locator("#jobs tbody tr")).to_have_count(50)  # one page, newest first
    expect(page.locator("#jobs tbody tr").first).to_have_attribute("data-id", fail["id"])
    page.locator("#older").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(6)
    expect(page.locator("#jobs tbody tr").last).to_have_attribute("data-id", ids[0])
    expect(page.locator("#older")).to_be_hidden()
    page.locator("#newest").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(50)

    page.locator('#filters select[name="status"]').select_option("dead")
    page.locator('#filters button[type="submit"]').click()
    expect(page).to_have_url(
        f"{dashboard.url}/dashboard/jobs?status=dead&task=&queue=&schedule=&search=")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    page.goto(f"{dashboard.url}/dashboard/jobs?task=noop&status=succeeded")
    expect(page.locator('#filters select[name="status"]')).to_have_value("succeeded")
    expect(page.locator("#jobs tbody tr")).to_have_count(50)


def test_job_data_is_shown_as_text_never_run_as_html(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    echo = wait_finished(client, submit(client, "echo", note=HOSTILE)["id"])
    dead = dead_job(client, message=HOSTILE)
    for path in (f"/dashboard/jobs/{echo['id']}", f"/dashboard/jobs/{dead['id']}",
                 "/dashboard/dead"):
        page.goto(f"{dashboard.url}{path}")
        expect(page.locator("main").get_by_text(HOSTILE).first).to_be_visible()
        # Checked by what the DOM holds, not only by the flag: the CSP would stop the
        # script from running even if it had been parsed into the page.
        assert page.locator("main script, main img").count() == 0
        assert page.evaluate("() => window.__pwned") is None


def test_a_page_on_another_site_cannot_cancel_a_job(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    job = submit(client, "sleep", seconds=60)
    wait_running(client, job["id"])
    cancel = f"{dashboard.url}/api/jobs/{job['id']}/cancel"
    post = "url => fetch(url, {method: 'POST', mode: 'no-cors'}).then(() => 'sent')"
    # localhost and 127.0.0.1 are different sites: a page on one is "another site" to the
    # other. A no-cors POST is sent without asking the server first, as an attack's would.
    elsewhere = dashboard.url.replace("127.0.0.1", "localhost")
    page.goto(f"{elsewhere}/api/health")
    assert page.evaluate(post, cancel) == "sent"
    page.goto(f"{elsewhere}/api/health")  # and once more after a navigation, for good measure
    assert page.evaluate(post, cancel) == "sent"
    after = client.get(f"/api/jobs/{job['id']}").json()
    assert after["status"] == "running" and after["cancel_requested"] is False
    # The same request from the server's own origin is honoured.
    page.goto(f"{dashboard.url}/api/health")
    assert page.evaluate(post, cancel) == "sent"
    wait_until(lambda: client.get(f"/api/jobs/{job['id']}").json()["cancel_requested"], 10,
               message="the same-origin cancel to land")


def test_the_jobs_list_shows_errors_and_durations_and_searches(page: Page,
                                                              dashboard: Server) -> None:
    client = dashboard.client()
    crashed = client.post("/api/jobs", json={  # its process ends abruptly: worker_died
        "task": "poison", "params": {"path": str(dashboard.data_dir / "poison.log")},
        "max_attempts": 1}).json()
    assert wait_finished(client, crashed["id"])["error_code"] == "worker_died"
    paper = wait_finished(client, submit(client, "echo", doi="10.1000/Paper-42")["id"])
    page.goto(f"{dashboard.url}/dashboard/jobs")
    # The error code once, then the message (the store's message starts with the code too).
    error = page.locator(f'#jobs tr[data-id="{crashed["id"]}"] .error-cell')
    expect(error).to_have_text(re.compile(r"^worker_died the job's process ended"))
    expect(error.locator("code")).to_have_text("worker_died")
    done = page.locator(f'#jobs tr[data-id="{paper["id"]}"] .duration')
    expect(done).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d s$"))

    # Search by params text, from the form; the URL keeps it.
    page.locator('#filters input[name="search"]').fill("paper-42")
    page.locator('#filters button[type="submit"]').click()
    expect(page).to_have_url(re.compile(r"search=paper-42"))
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("#jobs tbody tr")).to_have_attribute("data-id", paper["id"])
    page.goto(f"{dashboard.url}/dashboard/jobs?search={crashed['id'][:10]}")
    expect(page.locator("#jobs tbody tr")).to_have_attribute("data-id", crashed["id"])
    expect(page.locator('#filters input[name="search"]')).to_have_value(crashed["id"][:10])


def test_cancel_and_retry_the_selected_jobs(page: Page, dashboard: Server) -> None:
    client = dashboard.client()
    for _ in range(2):  # fill both slots, so the jobs below wait in the queue
        wait_running(client, submit(client, "sleep", seconds=60)["id"])
    queued = [submit(client, "echo", n=i)["id"] for i in range(3)]
    page.goto(f"{dashboard.url}/dashboard/jobs?task=echo")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    for job_id in queued[:2]:
        page.locator(f'#jobs tr[data-id="{job_id}"] input.select').check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.locator("#cancel-selected").click()
    expect(page.locator("#flash")).to_have_text("Cancel: 2 succeeded, 0 failed")
    assert [client.get(f"/api/jobs/{i}").json()["status"] for i in queued] == [
        "cancelled", "cancelled", "queued"]

    # Retry all three: the cancelled two go back to the queue, the queued one cannot.
    expect(page.locator(f'#jobs tr[data-id="{queued[0]}"]')).to_have_attribute(
        "data-status", "cancelled")
    page.locator("#select-all").check()
    expect(page.locator("#selected-count")).to_have_text("3 selected")
    page.locator("#retry-selected").click()
    expect(page.locator("#flash")).to_contain_text("Retry: 2 succeeded, 1 failed (")
    assert [client.get(f"/api/jobs/{i}").json()["status"] for i in queued] == [
        "queued", "queued", "queued"]


def test_a_jobs_page_lists_its_artifacts_with_download_links(page: Page,
                                                            dashboard: Server) -> None:
    client = dashboard.client()
    hostile = "<img src=x onerror=window.__pwned=1>.pdf"  # a name may hold any text but "/"
    names = [hostile, "data.csv"]
    job = wait_finished(client, submit(client, "artifact_files", names=names)["id"])
    page.goto(f"{dashboard.url}/dashboard/jobs/{job['id']}")
    rows = page.locator("#artifacts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(hostile)  # as text, never markup
    expect(rows.nth(0)).to_contain_text("application/pdf")
    expect(rows.nth(1)).to_contain_text("8 B")
    assert page.locator("main img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    with page.expect_download() as download:
        rows.nth(1).get_by_role("link", name="data.csv").click()
    assert download.value.suggested_filename == "data.csv"
    assert Path(download.value.path()).read_text() == "data.csv"
