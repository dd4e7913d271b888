"""The dashboard's login through a real server with auth = "keys": a key asked for once, then
a session cookie that every API worker honours, that shows only the key's tenant, and that
ends with a logout or when the key is revoked."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.jobs_api import submit
from tests.e2e.keyring import KEYS, as_key, make_key, refused_within_a_second, revoke

pytestmark = pytest.mark.e2e
COOKIE = "scholarsource_session"


def login(server, key: str, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return client.post("/dashboard/login", data={"key": key}, headers=headers)


def with_session(server, token: str) -> httpx.Client:
    """A client that sends the session cookie, one connection per request (so that the
    requests spread over the API workers)."""
    return server.client(headers={"Cookie": f"{COOKIE}={token}"},
                         limits=httpx.Limits(max_keepalive_connections=0))


@pytest.mark.both_backends
def test_a_login_keeps_a_session_for_its_tenant_on_every_worker(serve) -> None:
    server = serve(env=KEYS, workers=3)
    key = make_key(server, "acme", "read")
    mine = submit(as_key(server, make_key(server, "acme", "submit")), "echo", text="a")
    submit(as_key(server, make_key(server, "globex", "submit")), "echo", text="b")

    first = server.client().get("/dashboard/jobs", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (303, "/dashboard/login")
    wrong = login(server, key[:-2] + "xx")
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    assert "unknown or revoked" in wrong.text

    # A client's claim that it came over TLS is not trusted (secure_cookies is off).
    answer = login(server, key, **{"X-Forwarded-Proto": "https"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard")
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    token = answer.cookies[COOKIE]
    session = with_session(server, token)
    for _ in range(20):
        listed = session.get("/api/jobs")
        assert listed.status_code == 200
        assert [job["id"] for job in listed.json()["jobs"]] == [mine["id"]]
    page = session.get("/dashboard/jobs")
    assert page.status_code == 200 and "Log out" in page.text
    # The read key's session has the read key's rights, no more.
    assert session.post(f"/api/jobs/{mine['id']}/cancel").status_code == 403

    revoke(server, key)
    refused_within_a_second(lambda: session.get("/api/jobs").status_code)


@pytest.mark.both_backends
def test_logout_ends_the_session_and_another_site_cannot_log_in(serve) -> None:
    server = serve(env={**KEYS, "SCHOLARSOURCE_SECURE_COOKIES": "true"})
    key = make_key(server, "acme", "read")
    answer = login(server, key)
    assert "Secure" in answer.headers["set-cookie"]  # behind a TLS proxy, as the setting says
    token = answer.cookies[COOKIE]
    session = with_session(server, token)
    assert session.get("/api/stats").status_code == 200
    out = session.post("/dashboard/logout", follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/dashboard/login")
    assert f'{COOKIE}=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    refused_within_a_second(lambda: session.get("/api/stats").status_code)
    # A page of another site cannot log a browser in (the cross-site guard covers the form).
    with httpx.Client(base_url=server.url, timeout=10) as client:
        forged = client.post("/dashboard/login", data={"key": key},
                             headers={"Origin": "http://evil.example"})
    assert (forged.status_code, forged.json()["error"]) == (403, "cross_site_request")
    assert COOKIE not in forged.cookies
