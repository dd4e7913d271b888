"""The dashboard's login in a real browser, with auth = "keys": the key is asked for once, the
pages then show only that tenant's jobs, and logging out asks for it again."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.conftest import Server
from tests.e2e.jobs_api import submit
from tests.e2e.keyring import KEYS, as_key, make_key


def test_log_in_see_only_the_tenants_jobs_and_log_out(page: Page,
                                                      serve: Callable[..., Server]) -> None:
    server = serve(env=KEYS, workers=1)
    key = make_key(server, "acme", "read")
    mine = submit(as_key(server, make_key(server, "acme", "submit")), "noop")
    theirs = submit(as_key(server, make_key(server, "globex", "submit")), "noop")

    page.goto(f"{server.url}/dashboard/jobs")
    expect(page).to_have_url(f"{server.url}/dashboard/login")
    page.fill('input[name="key"]', key[:-1] + "x")
    page.click('button[type="submit"]')
    expect(page.locator("body")).to_contain_text("unknown or revoked")
    page.fill('input[name="key"]', key)
    page.click('button[type="submit"]')
    expect(page).to_have_url(f"{server.url}/dashboard")
    # Schedules are an admin's: a read key's overview leaves them out, without an error.
    expect(page.locator("#schedules")).to_be_hidden()
    expect(page.locator("#flash")).to_be_hidden()
    page.goto(f"{server.url}/dashboard/jobs")
    expect(page.locator(f'tr[data-id="{mine["id"]}"]')).to_be_visible()
    expect(page.locator(f'tr[data-id="{theirs["id"]}"]')).to_have_count(0)
    cookie = next(c for c in page.context.cookies() if c["name"] == "scholarsource_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.click(".logout button")
    expect(page).to_have_url(f"{server.url}/dashboard/login")
    page.goto(f"{server.url}/dashboard/jobs")
    expect(page).to_have_url(f"{server.url}/dashboard/login")


def test_an_admin_views_another_tenant_with_its_name_in_the_url(
        page: Page, serve: Callable[..., Server]) -> None:
    server = serve(env=KEYS, workers=1)
    admin = make_key(server, "ops", "admin")
    theirs = submit(as_key(server, make_key(server, "acme", "submit")), "noop")

    page.goto(f"{server.url}/dashboard/login")
    page.fill('input[name="key"]', admin)
    page.click('button[type="submit"]')
    expect(page).to_have_url(f"{server.url}/dashboard")
    page.goto(f"{server.url}/dashboard/jobs")  # every tenant's jobs, each named
    expect(page.locator(f'tr[data-id="{theirs["id"]}"] .tenant')).to_have_text("acme")
    page.goto(f"{server.url}/dashboard/jobs?tenant=ops")  # its own tenant: nothing
    expect(page.locator("#empty")).to_be_visible()
    page.goto(f"{server.url}/dashboard/jobs?tenant=acme")
    row = page.locator(f'tr[data-id="{theirs["id"]}"]')
    expect(row).to_be_visible()
    row.locator("a.id").click()  # the job's page, still acme's
    expect(page).to_have_url(f"{server.url}/dashboard/jobs/{theirs['id']}?tenant=acme")
    expect(page.locator("body")).to_contain_text("succeeded")
    page.click('a[data-nav="jobs"]')
    expect(page).to_have_url(f"{server.url}/dashboard/jobs?tenant=acme")
