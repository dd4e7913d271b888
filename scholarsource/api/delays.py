"""Delayed submits: `delay` (seconds from now) or `run_at` (when), read into one wall-clock
time. The job then waits as `scheduled` in the table alone: no process holds a timer for it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from scholarsource.errors import ValidationFailed

DELAY_FIELDS = frozenset({"delay", "run_at"})
# The last second an ISO 8601 time can name (9999-12-31T23:59:59Z): every accepted run_at
# can be written back as one.
LATEST = 253402300799.0
MAX_DELAY = 100 * 365.25 * 86400  # a century: past it, a delay is a typo


def parse_run_at(body: dict[str, Any], now: float | None = None) -> float | None:
    """When the job may start (None: at once), from the body's `delay` or `run_at`, or 422.
    A time already past is accepted: the job is due and queued at once."""
    delay, run_at = body.get("delay"), body.get("run_at")
    if delay is not None and run_at is not None:
        raise ValidationFailed("send delay or run_at, not both", code="delay_and_run_at",
                               field="run_at")
    now = time.time() if now is None else now
    if delay is not None:
        if (isinstance(delay, bool) or not isinstance(delay, int | float)
                or not 0 <= delay <= MAX_DELAY):
            raise ValidationFailed(f"delay: a number of seconds from now, from 0 to "
                                   f"{MAX_DELAY:.0f}",
                                   code="invalid_delay", field="delay")
        return now + delay
    if run_at is None:
        return None
    if isinstance(run_at, str):
        return _iso(run_at)
    if isinstance(run_at, bool) or not isinstance(run_at, int | float) \
            or not 0 <= run_at <= LATEST:
        raise _unreadable()
    return float(run_at)


def _iso(text: str) -> float:
    try:
        when = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lowercase t and z
    except ValueError:
        raise _unreadable() from None
    if when.tzinfo is None:
        raise ValidationFailed(f"run_at: {text[:40]!r} has no time zone; add one, as in "
                               f"2030-01-01T09:00:00Z or +02:00", code="run_at_without_zone",
                               field="run_at")
    return when.timestamp()


def _unreadable() -> ValidationFailed:
    return ValidationFailed("run_at: epoch seconds (a number) or an ISO 8601 time with a "
                            "zone, as in 2030-01-01T09:00:00Z", code="invalid_run_at",
                            field="run_at")
