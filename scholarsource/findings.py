"""What `scholarsource doctor` reports: one finding per check, OK, WARN or FAIL, with a fix.

Its own module because both doctor.py (config, disk, sizing) and every store (its library,
its connection, its schema: `Store.checks`) produce findings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """How a check came out."""

    OK = "OK"
    WARN = "WARN"  # works, but will hurt
    FAIL = "FAIL"  # will not work


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it came out, and how to fix it."""

    name: str
    status: Status
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for --json."""
        return {**asdict(self), "status": self.status.value}
