"""The cross-site guard, on a bare app: which requests it refuses, and how."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from scholarsource.api import csrf


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


APP = Starlette(routes=[Route("/api/x", ok, methods=["GET", "POST", "DELETE", "PUT", "PATCH"])],
                middleware=csrf.middleware())


class Client:
    """Requests straight into the app (Starlette's TestClient warns about httpx now)."""

    def request(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=APP)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://testserver") as client:
                return await client.request(method, url, headers=headers)

        return asyncio.run(send())

    def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        return self.request("GET", url, headers)


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.mark.parametrize("headers", [
    {},  # curl, another server
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    {"Sec-Fetch-Site": "none"},  # typed by the user
    {"Origin": "http://TestServer"},
    {"Origin": "http://example.com", "Host": "example.com:80"},
    {"Origin": "https://example.com", "Host": "example.com:443"},
    {"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"},
    {"Origin": "http://[::1]:8000", "Host": "[::1]:8000"},
])
def test_same_origin_and_headerless_requests_pass(client: Client,
                                                 headers: dict[str, str]) -> None:
    for method in ("POST", "DELETE", "PUT", "PATCH"):
        assert client.request(method, "/api/x", headers).status_code == 200


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site is cross-site"),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://testserver"},
     "Sec-Fetch-Site is same-site"),
    ({"Origin": "http://evil.example"}, "Origin does not match Host"),
    ({"Origin": "null"}, "Origin does not match Host"),  # sandboxed frames, file: pages
    ({"Origin": "http://testserver:8080"}, "Origin does not match Host"),
    ({"Origin": "ftp://testserver"}, "Origin does not match Host"),
    ({"Origin": "http://testserver:99999"}, "Origin does not match Host"),
    ({"Origin": "http://127.0.0.1:9000", "Host": "127.0.0.1:8000"},
     "Origin does not match Host"),
])
def test_cross_site_state_changes_are_refused(client: Client, headers: dict[str, str],
                                              reason: str) -> None:
    for method in ("POST", "DELETE", "PUT", "PATCH"):
        response = client.request(method, "/api/x", headers)
        assert response.status_code == 403
        assert response.json() == {"error": "cross_site_request",
                                   "message": f"cross-site {method} refused: {reason}"}


def test_safe_methods_pass_from_anywhere(client: Client) -> None:
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    assert client.get("/api/x", headers).status_code == 200
