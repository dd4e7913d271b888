"""`/dashboard` routes: seven pages and their static files, all shipped inside the package.

The pages are fixed HTML shells; their scripts fetch the JSON API and subscribe to its event
streams, so no job data is ever put into HTML on the server, and nothing needs escaping here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from string import Template

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scholarsource.api.tenancy import principal_of

PACKAGE = "scholarsource.dashboard"

# `default-src 'self'` allows no inline script or style: every script is a static file.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Page:
    """One dashboard page: its template, title and the scripts after common.js."""

    name: str
    title: str
    scripts: tuple[str, ...]


PAGES = {page.name: page for page in (
    Page("overview", "Overview", ("chart.js", "overview.js", "schedules.js")),
    Page("jobs", "Jobs", ("joblist.js", "jobs.js")),
    Page("job", "Job", ("family.js", "job.js")),
    Page("dead", "Dead letters", ("joblist.js", "dead.js")),
    Page("queues", "Queues", ("joblist.js", "queues.js")),
    Page("workflows", "Workflows", ("workflows.js",)),
    Page("workflow", "Workflow", ("workflow.js",)),
)}


def template(name: str) -> str:
    """The text of a template shipped in the package."""
    return resources.files(PACKAGE).joinpath("templates", name).read_text(encoding="utf-8")


# Logged in with a key (auth = "keys"), the header offers to end the session.
LOGOUT = ('<form class="logout" action="/dashboard/logout" method="post">'
          '<button type="submit">Log out</button></form>')


@functools.cache
def render(name: str, logout: bool = False) -> str:
    """A page: the layout around its body (built once per worker; it never changes)."""
    page = PAGES[name]
    scripts = "\n".join(f'<script src="/dashboard/static/{script}" defer></script>'
                        for script in ("common.js", *page.scripts))
    return Template(template("layout.html")).substitute(
        page=page.name, title=page.title, scripts=scripts, body=template(f"{name}.html"),
        logout=LOGOUT if logout else "")


def _endpoint(name: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def page(request: Request) -> HTMLResponse:
        logout = principal_of(request).key_id is not None  # logged in with a key
        return HTMLResponse(render(name, logout), headers=SECURITY_HEADERS)

    return page


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the wrapped app (the static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


routes = [
    Route("/dashboard", _endpoint("overview"), methods=["GET"]),
    Route("/dashboard/jobs", _endpoint("jobs"), methods=["GET"]),
    # The page is the same shell for every id: its script reads the id from the URL.
    Route("/dashboard/jobs/{job_id}", _endpoint("job"), methods=["GET"]),
    Route("/dashboard/dead", _endpoint("dead"), methods=["GET"]),
    Route("/dashboard/queues", _endpoint("queues"), methods=["GET"]),
    Route("/dashboard/workflows", _endpoint("workflows"), methods=["GET"]),
    Route("/dashboard/workflows/{workflow_id}", _endpoint("workflow"), methods=["GET"]),
    Mount("/dashboard/static",
          SecurityHeaders(StaticFiles(packages=[(PACKAGE, "static")]))),
]
