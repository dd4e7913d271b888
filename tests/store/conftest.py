"""Fixtures the store tests share."""

from __future__ import annotations

import pytest


@pytest.fixture(params=[False, True], ids=["aiosqlite", "inline"])
def inline(request: pytest.FixtureRequest) -> bool:
    """Every store test runs on both drivers: the API's (aiosqlite) and the pool's."""
    return bool(request.param)
