"""An API key's own rate, as the auth layer will hand it over (a Principal in the request's
scope, set here by a test middleware): each key has its bucket, within its tenant's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from scholarsource.api.app import create_app
from scholarsource.api.tenancy import PRINCIPAL_SCOPE_KEY, Principal
from scholarsource.config import Config
from scholarsource.limits import Rate, TenantLimits
from scholarsource.store.base import TaskDefaults
from scholarsource.store.schema import migrate
from scholarsource.store.sqlite import SqliteStore

KEYS = {"k1": Principal("acme", "submit", key_id="k1", rate=Rate(2, 3600.0)),
        "k2": Principal("acme", "submit", key_id="k2", rate=Rate(100, 3600.0))}


def with_keys(app: ASGIApp) -> ASGIApp:
    """The principal named by the X-Test-Key header, as auth would set it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = dict(scope["headers"]).get(b"x-test-key", b"").decode()
            scope[PRINCIPAL_SCOPE_KEY] = KEYS[key]
        await app(scope, receive, send)

    return middleware


def test_each_key_has_its_own_bucket_within_the_tenants(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path), job_log=False,
                    tenants={"acme": TenantLimits(rate=Rate(5, 3600.0))})
    migrate(config.db_path)

    async def go() -> None:
        store = await SqliteStore.open(config.db_path)
        await store.publish_tasks([TaskDefaults("noop", "default", None, None)])
        await store.close()
        app = create_app(config)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=with_keys(app)),
                base_url="http://127.0.0.1:8000") as client:

            async def submit(key: str) -> httpx.Response:
                return await client.post("/api/jobs", json={"task": "noop"},
                                         headers={"X-Test-Key": key})

            first = [await submit("k1") for _ in range(2)]
            assert [r.status_code for r in first] == [202, 202]
            # The key's bucket is the tighter one: it speaks for the answer.
            assert [r.headers["RateLimit-Limit"] for r in first] == ["2", "2"]
            refused = await submit("k1")
            assert refused.status_code == 429
            assert "over the API key's rate (2/h)" in refused.json()["message"]
            # Another key of the tenant still gets the tenant's 3 tokens left, then not.
            assert [(await submit("k2")).status_code for _ in range(4)] == [202] * 3 + [429]
            listed = await client.get("/api/jobs", headers={"X-Test-Key": "k2"})
            assert len(listed.json()["jobs"]) == 5

    asyncio.run(go())
