"""Request validation: bodies and query strings become typed values or an ApiError."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from scholarsource.config import Config, parse_size
from scholarsource.errors import BadRequest, PayloadTooLarge, UnsupportedMedia, ValidationFailed
from scholarsource.store.base import JobState, NewJob, TaskDefaults

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_TIMEOUT = 7 * 86400  # a week
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_LIMIT = 100
LIST_LIMIT_MAX = 1000
MAX_BACKOFF = 86400.0  # a day
# Sizes as the OpenAPI document promises them: a whole byte count, or a number and a unit
# (a subset of what config.parse_size reads, so every documented value is accepted).
MAX_MEMORY_LIMIT = 2**60  # fits SQLite's integers with room to spare
MEMORY_PATTERN = r"^ *[1-9][0-9]{0,5}(\.[0-9]{1,3})? *([KkMmGgTt]([Ii]?[Bb])?|[Bb])? *$"
SUBMIT_FIELDS = frozenset({"task", "params", "queue", "priority", "max_attempts", "timeout",
                           "memory_limit", "backoff_base", "backoff_max"})


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


def _seconds(body: dict[str, Any], field: str, default: float | None,
             high: float) -> float | None:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise _invalid(field, f"must be a number of seconds, above 0 and at most {high:g}")
    return float(value)


def _memory_limit(body: dict[str, Any], default: int | None) -> int | None:
    value = body.get("memory_limit")
    if value is None:
        return default
    try:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int | str):
            raise ValueError("a byte count or a string like '512MB'")
        limit = parse_size(value)
    except ValueError as exc:
        raise _invalid("memory_limit", str(exc)) from None
    if not 1 <= limit <= MAX_MEMORY_LIMIT:
        raise _invalid("memory_limit", f"must be from 1 to {MAX_MEMORY_LIMIT} bytes")
    return limit


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # 1-200 printable ASCII, no space


def parse_idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header, if any, or 422."""
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise ValidationFailed("Idempotency-Key: 1 to 200 printable ASCII characters, no "
                               "spaces", field="Idempotency-Key")
    return value


def parse_submit(body: Any, task: TaskDefaults | None, config: Config, tenant: str,
                 idempotency_key: str | None = None) -> NewJob:
    """Validate a submit body against the task it names (None: no such task). Whatever the
    body leaves out comes from the task, then from the config, so the job shows what
    applies."""
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
                or config.max_attempts)
    timeout = _seconds(body, "timeout", task.timeout, MAX_TIMEOUT)
    base = _seconds(body, "backoff_base", task.backoff_base or config.backoff_base,
                    MAX_BACKOFF)
    cap = _seconds(body, "backoff_max", task.backoff_max or config.backoff_max, MAX_BACKOFF)
    assert base is not None and cap is not None  # defaults are never None
    return NewJob(task=name, params=params, queue=queue, priority=priority,
                  max_attempts=attempts, timeout=timeout, tenant=tenant,
                  memory_limit=_memory_limit(body, task.memory_limit), backoff_base=base,
                  backoff_max=cap, idempotency_key=idempotency_key)


def parse_list_query(query: Any) -> dict[str, Any]:
    """Filters and paging for GET /api/jobs."""
    unknown = sorted(set(query) - {"status", "task", "queue", "limit", "cursor", "search"})
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
            "limit": int(limit_text), "cursor": None if cursor is None else int(cursor),
            "search": _search(query.get("search"))}


SEARCH_MAX = 200


def _search(text: str | None) -> str | None:
    """`search`: text to find in a job's id, task name or params (see Store.list_jobs)."""
    if text is not None and len(text) > SEARCH_MAX:
        raise _invalid("search", f"at most {SEARCH_MAX} characters")
    return text
