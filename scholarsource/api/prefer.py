"""`Prefer: return=minimal` (RFC 7240): a client that needs only the new job's id asks for a
short answer, and the server skips encoding the whole job (about a quarter of a batch's
CPU). The answer then says `Preference-Applied: return=minimal`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from scholarsource.api.headers import header_values
from scholarsource.store.base import Job

APPLIED = {"Preference-Applied": "return=minimal"}


def wants_minimal(request: Request) -> bool:
    """True if a Prefer header asks for return=minimal (tokens are case-insensitive,
    values are not, parameters after `;` are ignored)."""
    for header in header_values(request.scope, b"prefer"):
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() == "return" and value.strip().strip('"') == "minimal":
                return True
    return False


def minimal(job: Job) -> dict[str, Any]:
    """The short form of a submitted job: enough to follow it."""
    return {"id": job.id, "status": job.status.value, "final": job.status.final}
