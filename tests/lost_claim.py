"""A fault for a real server under test, loaded as one of its task modules (it registers no
task): the next read of claimed jobs' parent artifacts fails once, after the claim has
committed, as a dropped connection would (tests/e2e/test_lost_claims.py). Armed by creating
the file that $LOST_CLAIM_FAULT names; the read that fires removes it, so it fires once
whatever process or pool generation gets there first."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from scholarsource.errors import StoreUnavailable
from scholarsource.store.postgres import PostgresStore
from scholarsource.store.sqlite import SqliteStore

Read = Callable[[Any, list[str]], Awaitable[Any]]


def _failing_once(read: Read) -> Read:
    async def artifacts_of(self: Any, job_ids: list[str]) -> Any:
        try:
            os.unlink(os.environ["LOST_CLAIM_FAULT"])
        except (KeyError, FileNotFoundError):
            return await read(self, job_ids)
        raise StoreUnavailable("connection lost (injected by tests/lost_claim.py)")

    return artifacts_of


for _store in (SqliteStore, PostgresStore):
    _store.artifacts_of = _failing_once(_store.artifacts_of)  # type: ignore[method-assign]
