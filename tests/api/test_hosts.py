"""allowed_hosts: which Host values each bind answers, and which binds need the setting."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from scholarsource.api import hosts
from scholarsource.config import Config
from scholarsource.errors import ConfigError


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def status(config: Config, host: str) -> int:
    app = Starlette(routes=[Route("/", ok)], middleware=hosts.middleware(config))

    async def send() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return (await client.get("/", headers={"Host": host})).status_code

    return asyncio.run(send())


@pytest.mark.parametrize("bind", ["127.0.0.1:8000", "[::1]:8000", "localhost:8000",
                                  "127.0.0.2:8000"])
def test_a_loopback_bind_answers_the_loopback_names_on_any_port(bind: str) -> None:
    config = Config(bind=bind)
    hosts.check_bind(config)
    for host in ("localhost", "localhost:8000", "127.0.0.1:9", "[::1]", "[::1]:8000",
                 "LocalHost.", bind):
        assert status(config, host) == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]"):
        assert status(config, host) == 421, host


def test_named_hosts_with_and_without_a_port() -> None:
    config = Config(bind="0.0.0.0:8000", allowed_hosts=("Jobs.Example.com", "[2001:db8::1]:443",
                                                        "api.example.com:8443"))
    hosts.check_bind(config)
    for host in ("jobs.example.com", "jobs.example.com:1234", "[2001:db8::1]:443",
                 "api.example.com:8443"):
        assert status(config, host) == 200, host
    for host in ("[2001:db8::1]:80", "api.example.com", "localhost", "example.com"):
        assert status(config, host) == 421, host


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "[::]:8000", "10.1.2.3:8000",
                                  "myhost:8000"])
def test_a_bind_beyond_loopback_needs_allowed_hosts(bind: str) -> None:
    with pytest.raises(ConfigError, match="allowed_hosts must name"):
        hosts.check_bind(Config(bind=bind))


def test_star_adds_no_guard() -> None:
    config = Config(bind="0.0.0.0:8000", allowed_hosts=("*",))
    hosts.check_bind(config)
    assert hosts.middleware(config) == []
