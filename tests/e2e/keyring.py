"""Keys for the auth tests, made and revoked on a running server's store (as `scholarsource
keys` does, in process: a subprocess per key would cost a second each)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from scholarsource import keys
from scholarsource.config import Config
from scholarsource.store.factory import open_store
from tests.helpers import wait_until

if TYPE_CHECKING:
    from tests.conftest import Server

# What `serve` gets so that auth is on although the tests bind to loopback.
KEYS = {"SCHOLARSOURCE_AUTH": "keys"}


def _config(server: Server) -> Config:
    return Config(data_dir=str(server.data_dir), database=server.database)


def _run(work: Coroutine[Any, Any, None]) -> None:
    # On a thread of its own: a browser test's thread already runs Playwright's event loop.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, work).result()


def make_key(server: Server, tenant: str, role: keys.Role = "submit",
             rate: str | None = None) -> str:
    """A new key of `tenant` with `role` in the server's store; its text."""
    text, key = keys.new_key(tenant, role, rate=rate)

    async def create() -> None:
        store = await open_store(_config(server), "cli")
        try:
            await store.create_key(key)
        finally:
            await store.close()

    _run(create())
    return text


def revoke(server: Server, text: str) -> None:
    """Revoke a key in the server's store (committed when this returns)."""
    key_id = keys.key_id_of(text)
    assert key_id is not None

    async def run() -> None:
        store = await open_store(_config(server), "cli")
        try:
            assert await store.revoke_key(key_id, time.time()) is not None
        finally:
            await store.close()

    _run(run())


def bearer(text: str) -> dict[str, str]:
    """The header that sends a key."""
    return {"Authorization": f"Bearer {text}"}


def as_key(server: Server, text: str) -> httpx.Client:
    """A client of the server that sends `text` on every request."""
    return server.client(headers=bearer(text))


def refused_within_a_second(status: Callable[[], int], in_a_row: int = 30) -> None:
    """Call right after a revocation: `status` (one request, on a fresh connection so that
    the requests spread over the API workers) gives 401 from every worker within a second;
    waits for `in_a_row` refusals in a row, and fails on any success a second or more on."""
    revoked_at = time.monotonic()
    last_success: float | None = None
    streak = 0

    def refused_everywhere() -> bool:
        nonlocal last_success, streak
        answer = status()
        if answer == 200:
            last_success, streak = time.monotonic(), 0
        else:
            assert answer == 401, answer
            streak += 1
        return streak >= in_a_row

    wait_until(refused_everywhere, timeout=10, interval=0,
               message=f"{in_a_row} refusals in a row after the revocation")
    if last_success is not None:
        assert last_success - revoked_at < 1.0
