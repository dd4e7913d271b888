"""A headless Chromium for the dashboard tests, driven by Playwright's sync API.

Playwright's own browser download cannot work on our machines, so the tests drive Debian's
`chromium` package (`.ci/run` installs it). Without it they skip, and say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import Server

# expect() waits 5 s by default: too short for a job to run while two test workers share a
# loaded 2-core box. Waits end as soon as the page is right, so a long bound costs nothing.
expect.set_options(timeout=15_000)

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


# Per module, not per session: while Playwright's sync API is running, its event loop is
# the thread's running loop, and any later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does this)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; the test fails if the page logged a script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        # A refused request (the 404 of a missing job, an event stream being closed) is
        # logged by the browser itself; only our scripts' errors count.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    page.on("console", console)
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture
def dashboard(serve: Callable[..., Server]) -> Server:
    """A server for the browser to look at: two slots, one API worker. (Jobs still running
    at the end need no cancelling: `serve` kills its servers at teardown.)"""
    return serve(slots=2, workers=1)
