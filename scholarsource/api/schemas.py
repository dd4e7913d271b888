"""Request validation: bodies and query strings become typed values or an ApiError."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from scholarsource.errors import BadRequest, PayloadTooLarge, UnsupportedMedia, ValidationFailed
from scholarsource.store.base import JobState, NewJob, TaskDefaults

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_TIMEOUT = 7 * 86400  # a week
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_LIMIT = 100
LIST_LIMIT_MAX = 1000
SUBMIT_FIELDS = frozenset({"task", "params", "queue", "priority", "max_attempts", "timeout"})


# At most 18 digits: every such number fits SQLite's signed 64-bit integers (a larger
# Python int cannot even be bound to a statement).
COUNT_DIGITS = 18


def is_count(text: str) -> bool:
    """True for 1 to COUNT_DIGITS ASCII digits (str.isdigit() also accepts '²', which
    int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= COUNT_DIGITS


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body as JSON: 415 unless application/json, 413 past `max_bytes`,
    400 if it does not parse."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMedia("send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and is_count(declared):
        # The HTTP server delivers exactly Content-Length bytes, so the header is the size.
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
        body = await request.body()
    else:  # chunked: count as it arrives
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        body = b"".join(chunks)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {max_bytes} bytes", limit=max_bytes)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", field=field)


def _int(body: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    # 5.0 is an integer to JSON Schema (and to JavaScript); 5.5 and true are not.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, "must be an integer")
    if not low <= value <= high:
        raise _invalid(field, f"must be between {low} and {high}")
    return value


def parse_submit(body: Any, task: TaskDefaults | None, default_attempts: int,
                 tenant: str) -> NewJob:
    """Validate a submit body against the task it names (None: no such task)."""
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    unknown = sorted(set(body) - SUBMIT_FIELDS)
    if unknown:
        raise _invalid(unknown[0], f"unknown field (allowed: {', '.join(sorted(SUBMIT_FIELDS))})")
    name = body.get("task")
    if not isinstance(name, str) or not name:
        raise _invalid("task", "required, the name of a registered task")
    if task is None:
        raise ValidationFailed(f"task: no task named {name!r} is registered",
                               code="unknown_task", field="task")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise _invalid("params", "must be a JSON object")
    queue = body.get("queue", task.queue)
    if not isinstance(queue, str) or not NAME_PATTERN.fullmatch(queue):
        raise _invalid("queue", "must be 1-64 letters, digits, '_', '.', ':' or '-'")
    priority = _int(body, "priority", *PRIORITY_RANGE) or 0
    attempts = (_int(body, "max_attempts", 1, MAX_ATTEMPTS_LIMIT) or task.max_attempts
                or default_attempts)
    timeout = body.get("timeout", task.timeout)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout <= MAX_TIMEOUT):
        raise _invalid("timeout", "must be a number of seconds, above 0 and at most a week")
    return NewJob(task=name, params=params, queue=queue, priority=priority,
                  max_attempts=attempts, timeout=None if timeout is None else float(timeout),
                  tenant=tenant)


def parse_list_query(query: Any) -> dict[str, Any]:
    """Filters and paging for GET /api/jobs."""
    unknown = sorted(set(query) - {"status", "task", "queue", "limit", "cursor"})
    if unknown:
        raise _invalid(unknown[0], "unknown query parameter")
    # An empty value (`?status=`, as forms send) means the filter is not set.
    query = {key: value for key, value in query.items() if value != ""}
    status = query.get("status")
    if status is not None and status not in {s.value for s in JobState}:
        raise _invalid("status", f"must be one of {', '.join(s.value for s in JobState)}")
    limit_text = query.get("limit", "50")
    if not is_count(limit_text) or not 1 <= int(limit_text) <= LIST_LIMIT_MAX:
        raise _invalid("limit", f"must be an integer from 1 to {LIST_LIMIT_MAX}")
    cursor = query.get("cursor")
    if cursor is not None and not is_count(cursor):
        raise _invalid("cursor", "must be a next_cursor value from an earlier page")
    return {"status": status, "task": query.get("task"), "queue": query.get("queue"),
            "limit": int(limit_text), "cursor": None if cursor is None else int(cursor)}
