"""The dashboard's routes and package data, without a server."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import tomllib
from importlib import resources
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from scholarsource.dashboard import routes

ROOT = Path(__file__).parents[2]
APP = Starlette(routes=routes.routes)


def get(path: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=APP)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(path)

    return asyncio.run(send())


def shipped_files() -> list[str]:
    """Every template and static file, as paths relative to the scholarsource package."""
    package = resources.files("scholarsource")
    return [f"dashboard/{folder}/{entry.name}"
            for folder in ("templates", "static")
            for entry in package.joinpath("dashboard", folder).iterdir() if entry.is_file()]


def test_package_data_ships_every_template_and_static_file() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["scholarsource"]
    files = shipped_files()
    assert "dashboard/templates/layout.html" in files
    assert "dashboard/static/common.js" in files
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in globs), name


@pytest.mark.parametrize("name", sorted(routes.PAGES))
def test_each_page_renders_and_names_only_files_the_package_has(name: str) -> None:
    html = routes.render(name)
    assert "$" not in html  # every placeholder substituted
    assert f'data-page="{name}"' in html
    assert "<script>" not in html and " style=" not in html  # the CSP allows neither
    static = {f.rsplit("/", 1)[1] for f in shipped_files() if "/static/" in f}
    referenced = re.findall(r'"/dashboard/static/([^"]+)"', html)
    assert {"common.js", "dashboard.css", *routes.PAGES[name].scripts} <= set(referenced)
    assert set(referenced) <= static


@pytest.mark.parametrize(("path", "content_type"), [
    ("/dashboard", "text/html"),
    ("/dashboard/jobs", "text/html"),
    ("/dashboard/jobs/anything-at-all", "text/html"),
    ("/dashboard/dead", "text/html"),
    ("/dashboard/static/common.js", "text/javascript"),
    ("/dashboard/static/dashboard.css", "text/css"),
])
def test_pages_and_static_files_carry_the_security_headers(path: str,
                                                          content_type: str) -> None:
    response = get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    for header, value in routes.SECURITY_HEADERS.items():
        assert response.headers[header] == value
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_an_unknown_static_file_is_404() -> None:
    assert get("/dashboard/static/nope.js").status_code == 404
