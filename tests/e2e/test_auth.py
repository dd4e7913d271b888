"""auth = "keys" through a real server: every route of the app (enumerated, so a new one cannot
be missed) refuses no key, a malformed key and a revoked key; roles are enforced; a revoked
key stops working on every API worker within a second; and refused requests write nothing."""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from scholarsource.api import access
from scholarsource.api.app import create_app
from scholarsource.config import Config
from scholarsource.launcher import free_port
from tests.e2e.jobs_api import submit, wait_finished
from tests.e2e.keyring import KEYS, as_key, bearer, make_key, refused_within_a_second, revoke
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

# The routes that answer without a key, and why: health for systemd and load balancers; the
# dashboard's login form, its logout and its static files (no data in any of them).
# What each answers to a request without credentials: a login with no key is the login
# form again, with its own 401.
OPEN = {("GET", "/api/health"): 200, ("GET", "/dashboard/login"): 200,
        ("POST", "/dashboard/login"): 401, ("POST", "/dashboard/logout"): 303,
        ("GET", "/dashboard/static/common.js"): 200}
MALFORMED = ["Bearer", "Bearer  x", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "bearer ss_zz",
             "Bearer ss_0123456789ab_short", "Token ss_0123456789ab_" + "A" * 43]


def every_route() -> list[tuple[str, str]]:
    """(method, path) for every route and method the app serves, its parameters filled in."""
    found = []
    for route in create_app(Config()).routes:
        assert isinstance(route, Route | Mount), route
        path = re.sub(r"\{(job_id|workflow_id)\}", "j" * 22, route.path)
        path = re.sub(r"\{name\}", "default", path)
        if isinstance(route, Mount):
            found.append(("GET", f"{path}/common.js"))
            continue
        found.extend((method, path) for method in sorted(access.methods(route)))
    return found


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    body = {"json": {}} if method in ("POST", "DELETE") else {}
    return client.request(method, path, follow_redirects=False, **body, **kwargs)


def assert_refused(response: httpx.Response, method: str, path: str) -> None:
    where = f"{method} {path}"
    if path.startswith("/dashboard"):  # a browser: to the login form
        assert (response.status_code, response.headers.get("location")) == \
            (303, "/dashboard/login"), where
        return
    assert response.status_code == 401, (where, response.text)
    assert response.json()["error"] == "unauthorized", where
    assert response.headers["www-authenticate"].startswith("Bearer"), where


def test_every_route_is_listed_once_with_its_methods() -> None:
    routes = every_route()
    assert len(routes) == len(set(routes)) and len(routes) >= 30
    assert set(OPEN) <= set(routes)


@pytest.mark.both_backends
def test_every_route_refuses_no_key_a_malformed_key_and_a_revoked_key(serve) -> None:
    server = serve(env=KEYS)
    # With no admin key yet, serve said how to make one.
    assert "scholarsource keys create --tenant default --role admin" in \
        server.log_path.read_text()
    admin = make_key(server, "default", "admin")
    revoked = make_key(server, "acme", "admin")
    revoke(server, revoked)
    anonymous = server.client()
    for method, path in every_route():
        if (method, path) in OPEN:
            for headers in ({}, {"Authorization": MALFORMED[0]}, bearer(revoked)):
                answer = send(anonymous, method, path, headers=headers)
                assert answer.status_code == OPEN[method, path], (method, path, answer.text)
            continue
        assert_refused(send(anonymous, method, path), method, path)
        for header in MALFORMED:
            assert_refused(send(anonymous, method, path, headers={"Authorization": header}),
                           method, path)
        assert_refused(send(anonymous, method, path, headers=bearer(revoked)), method, path)
        # The right key's secret on another id, and a key with one character changed.
        wrong = revoked[:3] + admin[3:15] + revoked[15:]
        assert_refused(send(anonymous, method, path, headers=bearer(wrong)), method, path)
        flipped = admin[:-1] + ("A" if admin[-1] != "A" else "B")
        assert_refused(send(anonymous, method, path, headers=bearer(flipped)), method, path)
    # Nothing any refused request asked for was done: no job, no pause, no purge.
    listed = as_key(server, admin).get("/api/jobs", params={"tenant": "acme"}).json()
    assert listed["jobs"] == []
    assert as_key(server, admin).get("/api/jobs").json()["jobs"] == []
    queues = as_key(server, admin).get("/api/queues").json()["queues"]
    assert not any(queue["paused"] for queue in queues)


@pytest.mark.both_backends
def test_roles_read_submit_and_admin(serve) -> None:
    server = serve(env=KEYS)
    reader = as_key(server, make_key(server, "acme", "read"))
    submitter = as_key(server, make_key(server, "acme", "submit"))
    admin = as_key(server, make_key(server, "ops", "admin"))

    refused = reader.post("/api/jobs", json={"task": "echo", "params": {}})
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert reader.post("/api/submit", json={"task": "echo"}).status_code == 403
    job = submit(submitter, "echo", text="hi")
    assert reader.get(f"/api/jobs/{job['id']}").status_code == 200
    assert reader.get("/api/jobs").json()["jobs"][0]["id"] == job["id"]
    assert reader.get("/api/stats").status_code == 200
    assert reader.get("/api/queues").status_code == 200
    assert reader.post(f"/api/jobs/{job['id']}/cancel").status_code == 403
    assert reader.post(f"/api/cancel/{job['id']}").status_code == 403
    wait_finished(submitter, job["id"])
    # Operator routes: admin only.
    for client in (reader, submitter):
        assert client.delete("/api/dead").status_code == 403
        assert client.post("/api/queues/default/pause").status_code == 403
        assert client.get("/api/schedules").status_code == 403
        assert client.get("/metrics").status_code == 403
        # ?tenant= is an admin's filter: anyone else asking for another tenant is refused.
        other = client.get("/api/jobs", params={"tenant": "ops"})
        assert (other.status_code, other.json()["error"]) == (403, "forbidden")
        assert client.get("/api/jobs", params={"tenant": "acme"}).status_code == 200
    assert admin.get("/metrics").status_code == 200
    document = reader.get("/api/openapi.json").json()  # it tells clients to send a key
    assert document["security"] == [{"key": []}]
    assert document["paths"]["/api/health"]["get"]["security"] == []
    assert "401" in document["paths"]["/api/jobs/{job_id}"]["get"]["responses"]
    assert admin.delete("/api/dead").json() == {"purged": 0}
    assert admin.post("/api/queues/default/pause").json()["paused"] is True
    assert admin.post("/api/queues/default/resume").json()["paused"] is False
    # An admin reads every tenant's jobs, or one tenant's with ?tenant=; its figures and
    # bulk actions are its own tenant's unless ?tenant= names another.
    assert admin.get(f"/api/jobs/{job['id']}").json()["tenant"] == "acme"
    assert admin.get(f"/api/jobs/{job['id']}", params={"tenant": "ops"}).status_code == 404
    seen = admin.get(f"/api/jobs/{job['id']}", params={"tenant": "acme"})
    assert seen.status_code == 200 and seen.json()["id"] == job["id"]
    assert admin.get("/api/stats", params={"tenant": "acme"}).json()["totals"]["succeeded"] == 1
    assert admin.get("/api/stats").json()["totals"]["succeeded"] == 0


@pytest.mark.both_backends
def test_a_revoked_key_stops_working_on_every_worker_within_a_second(serve) -> None:
    server = serve(env=KEYS, workers=3)
    text = make_key(server, "acme", "read")

    def fresh_get() -> int:
        # A connection per request, so that the requests spread over the API workers.
        with httpx.Client(base_url=server.url, timeout=10, headers=bearer(text)) as client:
            return client.get("/api/jobs").status_code

    assert [fresh_get() for _ in range(30)] == [200] * 30  # every worker has it cached
    revoke(server, text)
    refused_within_a_second(fresh_get)


@pytest.mark.both_backends
def test_a_revoked_keys_open_event_stream_ends(serve) -> None:
    server = serve(env=KEYS)
    text = make_key(server, "acme", "read")
    with httpx.Client(base_url=server.url, timeout=10, headers=bearer(text)) as client, \
            client.stream("GET", "/api/stats/events") as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        wait_until(lambda: next(lines).startswith("data: "), message="a first snapshot")
        revoke(server, text)
        revoked_at = time.monotonic()
        # The stream sends a snapshot a second; once the key is refused it ends instead.
        for _ in lines:
            assert time.monotonic() - revoked_at < 5, "the stream outlived its key"
    assert time.monotonic() - revoked_at < 3


def test_a_public_bind_asks_for_keys_by_default(serve) -> None:
    port = free_port()
    server = serve(args=("--bind", f"0.0.0.0:{port}"), wait=False,
                   env={"SCHOLARSOURCE_ALLOWED_HOSTS": "*"})  # and no auth setting at all
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    server.clients.append(client)
    wait_until(lambda: _answers(client), 30, message="the server")
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers=bearer(make_key(server, "acme"))).status_code == 200


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/api/health").status_code == 200
    except httpx.TransportError:
        return False


def test_a_reload_cannot_turn_keys_off_on_a_public_bind(serve, tmp_path) -> None:
    config = tmp_path / "scholarsource.toml"
    config.write_text('auth = "keys"\nallowed_hosts = ["*"]\n')
    port = free_port()
    server = serve(args=("--bind", f"0.0.0.0:{port}", "--config", str(config)), wait=False)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    server.clients.append(client)
    wait_until(lambda: _answers(client), 30, message="the server")
    config.write_text('auth = "none"\nallowed_hosts = ["*"]\n')
    server.signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running one" in server.log(), message="the refusal")
    assert "allow_unauthenticated_remote" in server.log()
    assert client.get("/api/jobs").status_code == 401
