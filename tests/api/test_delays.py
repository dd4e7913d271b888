"""Reading a delayed submit's `delay` or `run_at` (api/delays.py), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from scholarsource.api.delays import LATEST, MAX_DELAY, parse_run_at
from scholarsource.errors import ValidationFailed

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("body", "when"), [
    ({}, None), ({"delay": None, "run_at": None}, None),
    ({"delay": 0}, NOW), ({"delay": 2.5}, NOW + 2.5), ({"delay": MAX_DELAY}, NOW + MAX_DELAY),
    ({"run_at": 1_900_000_000}, 1_900_000_000.0), ({"run_at": 0}, 0.0),
    ({"run_at": LATEST}, LATEST),
    ({"run_at": "2030-01-01T09:00:00Z"}, 1_893_488_400.0),
    ({"run_at": "2030-01-01t10:00:00+01:00"}, 1_893_488_400.0),
    ({"run_at": "2030-01-01 09:00:00.5z"}, 1_893_488_400.5),
])
def test_accepted(body: dict[str, Any], when: float | None) -> None:
    assert parse_run_at(body, now=NOW) == when


@pytest.mark.parametrize(("body", "code"), [
    ({"delay": 1, "run_at": NOW}, "delay_and_run_at"),
    ({"delay": -0.1}, "invalid_delay"), ({"delay": "5"}, "invalid_delay"),
    ({"delay": True}, "invalid_delay"), ({"delay": MAX_DELAY + 1}, "invalid_delay"),
    ({"run_at": -1}, "invalid_run_at"), ({"run_at": LATEST + 1}, "invalid_run_at"),
    ({"run_at": False}, "invalid_run_at"), ({"run_at": [1]}, "invalid_run_at"),
    ({"run_at": "soon"}, "invalid_run_at"), ({"run_at": "1900000000"}, "invalid_run_at"),
    ({"run_at": "2030-01-01T09:00:00"}, "run_at_without_zone"),
    ({"run_at": "2030-01-01"}, "run_at_without_zone"),
])
def test_refused(body: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_run_at(body, now=NOW)
    assert (refused.value.status, refused.value.code) == (422, code)
    assert refused.value.extra["field"] in ("delay", "run_at")
