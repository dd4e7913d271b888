"""The auth layer's parts without a server: what `auth` comes to for a bind, the refusal of
auth = "none" on a remote bind, the route policy's completeness, and the key check."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from types import SimpleNamespace

import pytest
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from scholarsource import keys
from scholarsource.api import access, auth, authmode, jobs
from scholarsource.api.tenancy import PRINCIPAL_SCOPE_KEY, Principal, jobs_scope
from scholarsource.config import Config
from scholarsource.errors import ConfigError, StoreUnavailable


@pytest.mark.parametrize(("bind", "setting", "expected"), [
    ("127.0.0.1:8000", "auto", "none"), ("[::1]:8000", "auto", "none"),
    ("localhost:8000", "auto", "none"), ("0.0.0.0:8000", "auto", "keys"),
    ("10.0.0.5:8000", "auto", "keys"), ("127.0.0.1:8000", "keys", "keys"),
    ("0.0.0.0:8000", "none", "none")])
def test_auth_auto_is_none_on_loopback_and_keys_elsewhere(bind: str, setting: str,
                                                           expected: str) -> None:
    assert authmode.mode(Config(bind=bind, auth=setting)) == expected


def test_auth_none_on_a_remote_bind_needs_the_operator_to_say_so() -> None:
    with pytest.raises(ConfigError, match="allow_unauthenticated_remote"):
        authmode.check_bind(Config(bind="0.0.0.0:8000", auth="none"))
    authmode.check_bind(Config(bind="0.0.0.0:8000", auth="none",
                               allow_unauthenticated_remote=True))
    authmode.check_bind(Config(bind="0.0.0.0:8000"))  # auto: keys
    authmode.check_bind(Config(bind="127.0.0.1:8000", auth="none"))


def test_a_route_without_a_policy_stops_the_app_from_building() -> None:
    async def endpoint(request: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(RuntimeError, match="/api/new-thing"):
        access.protect([Route("/api/new-thing", endpoint, methods=["GET"])], enforce=False)
    with pytest.raises(RuntimeError, match="PUT"):
        access.protect([Route("/api/jobs/{job_id}", endpoint, methods=["GET", "PUT"])],
                       enforce=True)


def test_a_key_is_checked_in_constant_time() -> None:
    text, key = keys.new_key("acme", "read")
    cases = {"right": text, "wrong secret": text[:16] + "A" * 43,
             "unknown id": "ss_0123456789ab_" + "A" * 43}

    async def find(key_id: str) -> keys.ApiKey | None:
        return key if key_id == key.id else None

    async def timed(candidate: str) -> float:
        start = time.perf_counter()
        for _ in range(1000):
            await auth.verify(candidate, find)
        return time.perf_counter() - start

    async def measure() -> dict[str, float]:
        # Interleaved batches, each round in another order, their medians compared: on a
        # loaded box (a CI run beside other work) 200-call batches in a fixed order once
        # put the first case 1.39x over the others.
        samples: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for round_ in range(30):
            for name in names[round_ % 3:] + names[:round_ % 3]:
                samples[name].append(await timed(cases[name]))
        return {name: statistics.median(values) for name, values in samples.items()}

    assert isinstance(asyncio.run(auth.verify(text, find)), keys.ApiKey)
    assert asyncio.run(auth.verify(cases["wrong secret"], find)) == \
        "the key is unknown or revoked"
    medians = asyncio.run(measure())
    assert max(medians.values()) / min(medians.values()) < 1.25, medians


def test_a_revoked_key_does_not_match() -> None:
    text, key = keys.new_key("acme", "admin")
    assert keys.matches(key, text)
    revoked = keys.ApiKey(key.id, key.tenant, key.role, revoked_at=1.0, digest=key.digest)
    assert not keys.matches(revoked, text)
    assert not keys.matches(None, text)
    assert "digest" not in repr(key) and key.digest not in repr(key)


def test_guarding_leaves_the_modules_routes_as_they_were() -> None:
    before = [route.app for route in jobs.routes if isinstance(route, Route)]
    guarded = access.protect(jobs.routes, enforce=True)
    assert all(isinstance(route.app, access.Guard) for route in guarded
               if isinstance(route, Route))
    assert [route.app for route in jobs.routes if isinstance(route, Route)] == before


def test_a_store_that_cannot_answer_the_key_lookup_is_a_503_not_a_500(tmp_path) -> None:
    """The key lookup runs in the middleware, outside the routes' exception handlers: a store
    that cannot answer it (a lost PostgreSQL, a file it cannot read) must still get the
    client a 503 with Retry-After, as a route's own store call would, never a 500."""

    class Lost:
        async def find_key(self, key_id: str) -> None:
            raise StoreUnavailable("the database is gone")

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the route must not run")

    app = auth.AuthMiddleware(route)
    state = SimpleNamespace(services=SimpleNamespace(store=Lost()))
    text, _ = keys.new_key("acme", "read")
    scope = {"type": "http", "method": "GET", "path": "/api/jobs", "app": SimpleNamespace(
        state=state), "headers": [(b"authorization", f"Bearer {text}".encode())]}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent[0], json.loads(sent[1]["body"])
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert body["error"] == "unavailable" and text not in json.dumps(body)


@pytest.mark.parametrize(("principal", "query", "expected"), [
    (None, "", "default"),  # auth = "none": the one tenant's indexes, never the window
    (None, "tenant=acme", "acme"),
    (("ops", "admin"), "", None),  # an admin key: every tenant
    (("ops", "admin"), "tenant=acme", "acme"),
    (("acme", "read"), "", "acme")])
def test_whose_jobs_a_list_covers(principal: tuple[str, str] | None, query: str,
                                  expected: str | None) -> None:
    scope: Scope = {"type": "http", "query_string": query.encode(), "headers": []}
    if principal is not None:
        scope[PRINCIPAL_SCOPE_KEY] = Principal(principal[0], principal[1],  # type: ignore[arg-type]
                                               key_id="k")
    assert jobs_scope(Request(scope)) == expected
