"""The library hooks server.py overrides are checked at start."""

from __future__ import annotations

import pytest
from uvicorn_worker import UvicornWorker

from scholarsource.errors import ScholarSourceError
from scholarsource.server import ApiWorker, check_overrides


def test_the_installed_libraries_have_every_hook_we_override() -> None:
    check_overrides()
    assert ApiWorker._serve is not UvicornWorker._serve


def test_a_hook_gone_from_a_library_stops_the_start_with_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(UvicornWorker, "_serve")
    with pytest.raises(ScholarSourceError, match=r"UvicornWorker\._serve is gone"):
        check_overrides()
