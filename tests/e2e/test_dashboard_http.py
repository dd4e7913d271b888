"""The dashboard and the cross-site guard, as a real server serves them (no browser)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scholarsource.dashboard.routes import SECURITY_HEADERS
from tests.conftest import Server
from tests.e2e.jobs_api import submit, wait_finished, wait_running

pytestmark = pytest.mark.e2e


def test_pages_and_static_files_come_from_the_installed_package(
        serve: Callable[..., Server]) -> None:
    client = serve(slots=1, workers=1).client()
    for path in ("/dashboard", "/dashboard/jobs", "/dashboard/jobs/x", "/dashboard/dead",
                 "/dashboard/queues", "/dashboard/workflows", "/dashboard/workflows/x"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for header, value in SECURITY_HEADERS.items():
            assert page.headers[header] == value
        for script in ("common.js", "dashboard.css"):
            assert f"/dashboard/static/{script}" in page.text
    assert client.get("/dashboard/static/overview.js").status_code == 200
    assert client.get("/dashboard/static/favicon.svg").headers["content-type"] == (
        "image/svg+xml")


def test_cross_site_state_changes_are_refused_and_change_nothing(
        serve: Callable[..., Server]) -> None:
    server = serve(slots=2, workers=1)
    client = server.client()
    job = submit(client, "sleep", seconds=60)
    wait_running(client, job["id"])
    dead = submit(client, "fail")
    wait_finished(client, dead["id"])
    host = server.url.removeprefix("http://")

    for method, path in (("POST", f"/api/jobs/{job['id']}/cancel"),
                         ("DELETE", "/api/dead"), ("POST", "/api/dead/retry")):
        for headers in ({"Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://evil.example"}):
            refused = client.request(method, path, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "cross_site_request"
    assert client.get(f"/api/jobs/{job['id']}").json()["cancel_requested"] is False
    assert client.get(f"/api/jobs/{dead['id']}").json()["status"] == "dead"

    # The dashboard's own requests: same origin, so they pass.
    same_origin = {"Origin": server.url, "Sec-Fetch-Site": "same-origin", "Host": host}
    cancel = client.post(f"/api/jobs/{job['id']}/cancel", headers=same_origin)
    assert cancel.status_code == 202, cancel.text
    # A client with no browser headers (curl, a backend) passes too.
    assert client.delete("/api/dead").json() == {"purged": 1}


@pytest.mark.both_backends
def test_the_jobs_list_searches_ids_tasks_and_params_text(
        serve: Callable[..., Server]) -> None:
    # Each page of a search reads at most search_scan_rows jobs: 4 here, to see it page on.
    client = serve(slots=1, workers=1, env={"SCHOLARSOURCE_SEARCH_SCAN_ROWS": "4"}).client()
    paper = submit(client, "echo", url="https://example.org/Paper-42.pdf")
    ids = [submit(client, "echo", n=i)["id"] for i in range(3)]
    odd = submit(client, "echo", note="100% café_au_lait")
    slow = submit(client, "sleep", seconds=0)
    wait_finished(client, slow["id"])

    def search(text: str, **query: str) -> tuple[list[str], str | None]:
        page = client.get("/api/jobs", params={"search": text, **query})
        assert page.status_code == 200, page.text
        return [job["id"] for job in page.json()["jobs"]], page.json()["next_cursor"]

    # Params text, any case: the newest 4 jobs hold no match, the next page finds it.
    found, cursor = search("paper-42")
    assert found == [] and cursor is not None
    assert search("paper-42", cursor=cursor) == ([paper["id"]], None)
    assert search("SLEEP")[0] == [slow["id"]]                      # the task's name
    assert search(ids[1][:12])[0] == [ids[1]]                       # part of an id
    # % and _ are text, not wildcards; non-ASCII matches as JSON stored it.
    assert search("100% café_au")[0] == [odd["id"]]
    assert search("_au_")[0] == [odd["id"]] and search("1_0")[0] == []
    assert search("zz_no_such_text", status="succeeded")[0] == []

    too_long = client.get("/api/jobs", params={"search": "x" * 201})
    assert too_long.status_code == 422 and too_long.json()["error"] == "invalid_request"
    assert "search" in too_long.json()["message"]
