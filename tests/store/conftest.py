"""Fixtures the store tests share: every contract test runs on every backend."""

from __future__ import annotations

import pytest

from tests.store.backends import NAMES, Backend


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest) -> Backend:
    """SQLite through aiosqlite (the API's driver), SQLite inline (the pool's), and
    PostgreSQL, on a fresh database of the session's throwaway cluster."""
    if request.param == "postgres":
        return Backend("postgres", request.getfixturevalue("pg_url"))
    return Backend(request.param)


@pytest.fixture(params=[False, True], ids=["aiosqlite", "inline"])
def inline(request: pytest.FixtureRequest) -> bool:
    """The SQLite-only tests (pragmas, query plans, the file itself) on both its drivers."""
    return bool(request.param)
