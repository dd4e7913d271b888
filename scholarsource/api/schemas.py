"""Request validation: bodies and query strings become typed values or an ApiError."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from scholarsource.api.delays import DELAY_FIELDS, parse_run_at
from scholarsource.api.headers import header
from scholarsource.config import Config, parse_size
from scholarsource.errors import BadRequest, PayloadTooLarge, UnsupportedMedia, ValidationFailed
from scholarsource.limits import MAX_CONCURRENCY, NAME_PATTERN
from scholarsource.store.base import JobState, NewJob, TaskDefaults
from scholarsource.store.frozen import built, defaults
from scholarsource.tasks.params import InvalidParams
from scholarsource.tasks.params import check as check_params

PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_LIMIT = 100
LIST_LIMIT_MAX = 1000
WORKFLOW_LIST_MAX = 200  # each workflow listed costs a read of its jobs
MAX_BACKOFF = 86400.0  # a day
MAX_CONCURRENCY_KEY = 200  # characters: a user id or an e-mail address fits
# Sizes as the OpenAPI document promises them: a whole byte count, or a number and a unit
# (a subset of what config.parse_size reads, so every documented value is accepted).
MAX_MEMORY_LIMIT = 2**60  # fits SQLite's integers with room to spare
MEMORY_PATTERN = r"^ *[1-9][0-9]{0,5}(\.[0-9]{1,3})? *([KkMmGgTt]([Ii]?[Bb])?|[Bb])? *$"
SUBMIT_FIELDS = frozenset({"task", "params", "queue", "priority", "max_attempts", "timeout",
                           "memory_limit", "backoff_base", "backoff_max", "cache_ttl",
                           "bypass_cache", "unique", "concurrency_key",
                           "concurrency_limit", "depends_on",
                           "on_parent_failure"}) | DELAY_FIELDS


# At most 18 digits: every such number fits SQLite's signed 64-bit integers (a larger
# Python int cannot even be bound to a statement).
COUNT_DIGITS = 18


def is_count(text: str) -> bool:
    """True for 1 to COUNT_DIGITS ASCII digits (str.isdigit() also accepts '²', which
    int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= COUNT_DIGITS


async def read_json(request: Request, config: Config, max_bytes: int | None = None,
                    around: int = 1) -> Any:
    """The request body as JSON: 415 unless application/json, 413 past `max_bytes`
    (max_body_bytes by default), 400 if it does not parse, 422 if it holds what the API
    could not render again (see `parse_json`). `around`: levels of the body around a job's
    params (1: a submit's envelope)."""
    max_bytes = config.max_body_bytes if max_bytes is None else max_bytes
    media_type = (header(request.scope, b"content-type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMedia("send the body as JSON with Content-Type: application/json")
    declared = header(request.scope, b"content-length")
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
    return parse_json(body, config.max_params_depth + around)


class _Unrenderable(Exception):
    """Raised while parsing for a value that JSON has no text for."""


def _no_constant(name: str) -> Any:
    raise _Unrenderable(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unrenderable(f"{text[:40]} is out of range for a number")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_ok(text: str) -> bool:
    return text.isascii() or not _SURROGATE.search(text)


def parse_json(body: bytes, max_depth: int) -> Any:
    """Parse a body, refusing (422) what the store must never hold because no answer could
    render it again: NaN, Infinity, numbers that overflow to infinity, lone surrogates;
    and lists or objects nested deeper than `max_depth` (each container is a level), which
    only serve to exhaust a parser's or pickle's recursion. 400 if it is not JSON."""
    try:
        # json.loads with hooks builds a decoder per call; one serves every request.
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except _Unrenderable as exc:
        raise ValidationFailed(str(exc), code="invalid_json_value") from None
    except RecursionError:  # the parser itself recursed too deep: far past the limit
        raise _too_deep(max_depth) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if _plainly_bounded(body, max_depth):
        return value
    # Walked with a stack of its own, so no depth can exhaust Python's.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise _too_deep(max_depth)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
            if isinstance(item, dict) and not all(_text_ok(key) for key in item):
                raise _lone_surrogate()
        elif isinstance(item, str) and not _text_ok(item):
            raise _lone_surrogate()
    return value


def _plainly_bounded(body: bytes, max_depth: int) -> bool:
    """Whether the body cannot hold what parse_json walks for, seen from its bytes alone (most
    submits; the walk cost them ~10 us): ASCII with no NUL is UTF-8 (json.loads takes UTF-16
    and -32 too), where a lone surrogate can only be a \\u escape, and there is none; and it
    has no more brackets than the depth allows, so nothing nests deeper. (find, not `in`:
    `bytes in bytes` first tries the needle as an int and raises and clears a TypeError.)"""
    return (body.isascii() and body.find(b"\0") < 0 and body.find(b"\\u") < 0
            and body.count(b"{") + body.count(b"[") <= max_depth)


def _too_deep(max_depth: int) -> ValidationFailed:
    return ValidationFailed(f"the JSON nests lists and objects more than {max_depth} levels "
                            f"deep (max_params_depth)", code="params_too_deep",
                            limit=max_depth)


def _lone_surrogate() -> ValidationFailed:
    return ValidationFailed("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                            "which is not text", code="invalid_json_value")


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


def _flag(body: dict[str, Any], field: str, default: bool) -> bool:
    """A true/false field; null or left out is `default`."""
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(field, "must be true or false")
    return value


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


# POST /api/jobs/cancel: the states a bulk cancel reaches, and the fields its body takes.
CANCELLABLE_STATES = tuple(state for state in JobState if not state.final)
BULK_CANCEL_FILTERS = ("status", "task", "queue")


def parse_bulk_cancel(body: Any) -> dict[str, str | None]:
    """Filters for a bulk cancel: at least one of status, task and queue, or `"all": true`
    to cancel every live job (filters given with it still narrow)."""
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    unknown = sorted(set(body) - {*BULK_CANCEL_FILTERS, "all"})
    if unknown:
        raise _invalid(unknown[0], "unknown field (allowed: all, queue, status, task)")
    if "all" in body and body["all"] is not True:
        raise _invalid("all", "must be true (or left out)")
    for name in BULK_CANCEL_FILTERS:
        if name in body and (not isinstance(body[name], str) or not body[name]):
            raise _invalid(name, "must be a non-empty string")
    status = body.get("status")
    if status is not None and status not in CANCELLABLE_STATES:
        raise _invalid("status", f"only {', '.join(CANCELLABLE_STATES)} jobs can be cancelled")
    filters = {name: body.get(name) for name in BULK_CANCEL_FILTERS}
    if "all" not in body and not any(filters.values()):
        raise ValidationFailed("name the jobs to cancel with status, task or queue, or send "
                               '"all": true to cancel every job not yet final',
                               code="filter_required")
    return filters


def parse_submit(body: Any, task: TaskDefaults | None, config: Config, tenant: str,
                 idempotency_key: str | None = None, known_tasks: Iterable[str] = ()
                 ) -> NewJob:
    """Validate a submit body against the task it names (None: no such task, and
    `known_tasks` are the names it might have meant). Whatever the body leaves out comes
    from the task, then from the config, so the job shows what applies."""
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    if not SUBMIT_FIELDS.issuperset(body):  # the common case, without building a set
        unknown = sorted(set(body) - SUBMIT_FIELDS)
        raise _invalid(unknown[0], f"unknown field (allowed: {', '.join(sorted(SUBMIT_FIELDS))})")
    name = body.get("task")
    if not isinstance(name, str) or not name:
        raise _invalid("task", "required, the name of a registered task")
    if task is None:
        close = difflib.get_close_matches(name, list(known_tasks), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationFailed(f"task: no task named {name!r} is registered{hint}",
                               code="unknown_task", field="task")
    params = _params(body.get("params", {}), task, config.max_params_bytes)
    queue = body.get("queue", task.queue)
    if not isinstance(queue, str) or not NAME_PATTERN.fullmatch(queue):
        raise _invalid("queue", "must be 1-64 letters, digits, '_', '.', ':' or '-'")
    priority = _int(body, "priority", *PRIORITY_RANGE) or 0
    attempts = (_int(body, "max_attempts", 1, MAX_ATTEMPTS_LIMIT) or task.max_attempts
                or config.max_attempts)
    timeout = _seconds(body, "timeout", task.timeout or config.default_timeout,
                       config.max_timeout)
    base = _seconds(body, "backoff_base", task.backoff_base or config.backoff_base,
                    MAX_BACKOFF)
    cap = _seconds(body, "backoff_max", task.backoff_max or config.backoff_max, MAX_BACKOFF)
    assert base is not None and cap is not None  # defaults are never None
    return built(NewJob, {
        **_NEW_JOB, "task": name, "params": params, "queue": queue, "priority": priority,
        "max_attempts": attempts, "timeout": timeout, "tenant": tenant,
        "memory_limit": _memory_limit(body, task.memory_limit), "backoff_base": base,
        "backoff_max": cap, "idempotency_key": idempotency_key,
        "cache_ttl": _seconds(body, "cache_ttl", task.cache_ttl, config.max_cache_ttl),
        "bypass_cache": _flag(body, "bypass_cache", False),
        "unique": _flag(body, "unique", task.unique), "run_at": parse_run_at(body),
        **_concurrency(body, task), **parse_dependencies(body, config.max_parents)})


# A submit's NewJob starts from these (what a submit body cannot set keeps its default).
_NEW_JOB = defaults(NewJob)


JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the shape of every id the server hands out
ON_PARENT_FAILURE = ("cancel", "run")
_NO_PARENTS: dict[str, Any] = {"depends_on": (), "on_parent_failure": "cancel"}


def parse_dependencies(body: dict[str, Any], max_parents: int,
                       parents: list[str] | None = None) -> dict[str, Any]:
    """depends_on (job ids, each once, at most `max_parents`; `parents` instead when the
    caller resolved them, as a workflow does from step names) and on_parent_failure. A job
    waits for its parents or for its time, never both."""
    if parents is None and "depends_on" not in body and "on_parent_failure" not in body:
        return _NO_PARENTS  # most submits: saves a batch ~0.7 us a job
    given = body.get("depends_on") if parents is None else parents
    if given is None:
        if body.get("on_parent_failure") is None:  # most submits: no parents, the default
            return {"depends_on": (), "on_parent_failure": "cancel"}
        given = []
    if not isinstance(given, list) or not all(isinstance(p, str) and JOB_ID.fullmatch(p)
                                              for p in given):
        raise _invalid("depends_on", "must be a list of job ids")
    unique = list(dict.fromkeys(given))
    if len(unique) > max_parents:
        raise ValidationFailed(f"depends_on: {len(unique)} parents, more than {max_parents} "
                               f"(max_parents)", code="too_many_parents",
                               field="depends_on", limit=max_parents)
    mode = body.get("on_parent_failure")
    mode = "cancel" if mode is None else mode
    if mode not in ON_PARENT_FAILURE:
        raise _invalid("on_parent_failure", 'must be "cancel" or "run"')
    if unique and any(body.get(name) is not None for name in DELAY_FIELDS):
        raise ValidationFailed("depends_on: a job waits for its parents or for a delay, "
                               "not both", field="depends_on")
    return {"depends_on": tuple(unique), "on_parent_failure": mode}


def _concurrency(body: dict[str, Any], task: TaskDefaults) -> dict[str, Any]:
    """A submit's concurrency_key (a user id, say) and how many jobs of the tenant with
    that key may run at once: the submit's limit, else the task's, else 1."""
    key = body.get("concurrency_key")
    limit = _int(body, "concurrency_limit", 1, MAX_CONCURRENCY)
    if key is None:
        if limit is not None:
            raise _invalid("concurrency_limit", "needs a concurrency_key to limit")
        return {}
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_CONCURRENCY_KEY or \
            not _text_ok(key):
        raise _invalid("concurrency_key", f"must be a string of 1 to {MAX_CONCURRENCY_KEY} "
                       f"characters")
    return {"concurrency_key": key,
            "concurrency_limit": limit or task.concurrency_limit or 1}


def _params(params: Any, task: TaskDefaults, max_bytes: int) -> dict[str, Any]:
    """The params, checked against the task's published signature and measured as the
    store will keep them."""
    if not isinstance(params, dict):
        raise _invalid("params", "must be a JSON object")
    try:
        checked = check_params(params, task.params)
    except InvalidParams as exc:
        raise ValidationFailed(f"params.{exc}", code="invalid_params", field="params",
                               param=exc.param) from None
    size = len(json.dumps(checked))  # as the store writes them
    if size > max_bytes:
        raise ValidationFailed(f"params: {size} bytes of JSON, more than {max_bytes} "
                               f"(max_params_bytes)", code="params_too_large",
                               field="params", limit=max_bytes)
    return checked


def parse_list_query(query: Any) -> dict[str, Any]:
    """Filters and paging for GET /api/jobs."""
    # `tenant` is the admin's filter, read by tenancy.tenant_of.
    unknown = sorted(set(query) - {"status", "task", "queue", "schedule", "limit", "cursor",
                                   "search", "tenant"})
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
            "schedule": query.get("schedule"), "limit": int(limit_text),
            "cursor": None if cursor is None else int(cursor),
            "search": _search(query.get("search"))}


def parse_workflow_list_query(query: Any) -> int:
    """The `limit` of GET /api/workflows (50 unless given)."""
    unknown = sorted(set(query) - {"limit", "tenant"})  # `tenant`: the admin's, tenancy's
    if unknown:
        raise _invalid(unknown[0], "unknown query parameter")
    text = query.get("limit") or "50"
    if not is_count(text) or not 1 <= int(text) <= WORKFLOW_LIST_MAX:
        raise _invalid("limit", f"must be an integer from 1 to {WORKFLOW_LIST_MAX}")
    return int(text)


SEARCH_MAX = 200


def _search(text: str | None) -> str | None:
    """`search`: text to find in a job's id, task name or params (see Store.list_jobs)."""
    if text is not None and len(text) > SEARCH_MAX:
        raise _invalid("search", f"at most {SEARCH_MAX} characters")
    return text
