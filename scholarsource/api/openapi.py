"""`GET /api/openapi.json`: the API described as an OpenAPI 3.1 document."""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource import __version__
from scholarsource.api import access, authmode
from scholarsource.api.delays import LATEST, MAX_DELAY
from scholarsource.api.queues import known_queues
from scholarsource.api.schemas import (
    BULK_CANCEL_FILTERS,
    CANCELLABLE_STATES,
    COUNT_DIGITS,
    LIST_LIMIT_MAX,
    MAX_ATTEMPTS_LIMIT,
    MAX_BACKOFF,
    MAX_CONCURRENCY_KEY,
    MAX_MEMORY_LIMIT,
    MEMORY_PATTERN,
    PRIORITY_RANGE,
    SEARCH_MAX,
    WORKFLOW_LIST_MAX,
)
from scholarsource.api.state import services
from scholarsource.limits import MAX_CONCURRENCY, NAME_PATTERN
from scholarsource.store.base import JobState

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}
_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {str(code): _answer(text, _ERROR) for code, text in (
    (400, "malformed JSON"), (404, "no such job"), (413, "body too large"),
    (415, "not application/json"),
    (422, "invalid fields (invalid_request), unknown task (unknown_task), params that do "
          "not fit the task's signature (invalid_params), nested deeper than "
          "max_params_depth (params_too_deep), larger than max_params_bytes "
          "(params_too_large), NaN, Infinity, overflowing numbers or lone surrogates "
          "(invalid_json_value), a body without task where compat_task is not set "
          "(compat_task_not_set)"),
    (503, "the store cannot take writes now; retry"))}

_TOO_MANY = _answer("over a submit rate (rate_limited) or a max_queued (quota_exceeded); "
                    "nothing was written: retry after Retry-After (RateLimit-Limit, "
                    "-Remaining and -Reset say more)", _ERROR)
_JOBS = {"type": "object", "properties": {"jobs": {"type": "array", "items": _JOB}}}
_COUNT = {"type": "string", "pattern": f"^[0-9]{{0,{COUNT_DIGITS}}}$"}
_CANCEL_ANSWERS = {"200": _answer("cancelled", _JOB),
                   "202": _answer("cancel requested", _JOB),
                   "409": _answer("already finished", _ERROR), **_ERRORS}

_PREFER = {"name": "Prefer", "in": "header", "required": False,
           "description": "return=minimal (RFC 7240): answer each job as only its id, "
                          "status and final (Preference-Applied: return=minimal).",
           "schema": {"type": "string"}}

_SUBMIT = {
    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "Send the same key again (a retry) to get the same job "
                                   "back instead of a second one.",
                    "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"}}, _PREFER],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Submit"}}}},
    "responses": {"202": _answer("queued; the row is committed", _JOB),
                  "200": _answer("an existing job, and nothing new runs: this "
                                 "Idempotency-Key's job (Idempotent-Replayed: true), a "
                                 "success of the same task and params within cache_ttl "
                                 "(Cache-Hit: true), or a unique job's live twin", _JOB),
                  "409": _answer("this Idempotency-Key named another task or params",
                                 _ERROR), **_ERRORS, "429": _TOO_MANY},
}

_BATCH = {
    "summary": "Submit many jobs, all or nothing, in one transaction",
    "description": "Each item is a Submit body and may carry `idempotency_key` (as the "
                   "Idempotency-Key header does for one submit). Every item is validated "
                   "first: a bad one answers with the code a single submit would give, its "
                   "message starting `jobs[INDEX]: ` and `index` in the JSON, and nothing "
                   "is written. Quotas count every new job: a batch that does not fit is "
                   "refused whole. The body may be up to max_batch_body_bytes.",
    "parameters": [_PREFER],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["jobs"], "additionalProperties": False,
        "properties": {"jobs": {"type": "array", "minItems": 1,
                                "items": {"$ref": "#/components/schemas/Submit"}}}}}}},
    "responses": {"202": _answer("committed; at least one job is new", _JOBS),
                  "200": _answer("every job already existed (their keys named them)",
                                 _JOBS),
                  "409": _answer("an item's idempotency_key named another task or params "
                                 "(with index)", _ERROR),
                  **_ERRORS, "422": _answer("an item as a submit would refuse it (with "
                                            "index), or more than max_batch jobs "
                                            "(batch_too_large)", _ERROR),
                  "429": _TOO_MANY},
}

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_WORKFLOW_ID = {"name": "workflow_id", "in": "path", "required": True,
                "schema": {"type": "string"}}
_WORKFLOW = {"type": "object", "properties": {
    "id": {"type": "string"},
    "status": {"enum": ["running", "succeeded", "failed", "cancelled"]},
    "final": {"type": "boolean"},
    "progress": {"type": "object", "properties": {
        "done": {"type": "integer"}, "total": {"type": "integer"},
        "fraction": {"type": "number"}}},
    "steps": {"type": "object", "additionalProperties": {"type": "object"}}}}
_SCHEDULE = {"type": "object", "properties": {
    "name": {"type": "string"}, "task": {"type": "string"}, "params": {"type": "object"},
    "queue": {"type": ["string", "null"]}, "priority": {"type": "integer"},
    "cron": {"type": ["string", "null"]}, "every": {"type": ["number", "null"]},
    "timezone": {"type": "string"}, "catch_up": {"enum": ["latest", "none"]},
    "paused": {"type": "boolean"}, "next_fire": {"type": ["number", "null"]},
    "last_fire": {"type": ["number", "null"]}, "last_job_id": {"type": ["string", "null"]},
    "last_status": {"type": ["string", "null"]}}}
_SCHEDULE_ERRORS = {**_ERRORS, "404": _answer("no schedule of that name "
                                              "(schedule_not_found)", _ERROR)}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ScholarSource", "version": __version__,
             "description": "A job server for one big machine."},
    "paths": {
        "/api/jobs/batch": {"post": _BATCH},
        "/api/jobs": {
            "post": {"summary": "Submit a job", **_SUBMIT},
            "get": {"summary": "List jobs, newest first", "parameters": [
                {"name": "status", "in": "query",
                 "schema": {"enum": ["", *(s.value for s in JobState)]}},
                {"name": "cursor", "in": "query", "schema": _COUNT}] + [
                {"name": name, "in": "query", "schema": {"type": "string"}}
                for name in ("task", "queue", "schedule")] + [
                {"name": "limit", "in": "query", "schema": {"anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX},
                    {"const": ""}]}},
                {"name": "search", "in": "query", "schema": {"type": "string",
                                                              "maxLength": SEARCH_MAX},
                 "description": "Text found in the job's id, task or params (JSON text), "
                                "within the newest search_scan_rows jobs the other filters "
                                "match from the cursor on; next_cursor continues further."}],
                "responses": {"200": _answer("a page of jobs", {
                    "type": "object", "properties": {
                        "jobs": {"type": "array", "items": _JOB},
                        "next_cursor": {"type": ["string", "null"]}}}), **_ERRORS}},
        },
        "/api/jobs/{job_id}": {"get": {"summary": "Get a job", "parameters": [_ID],
                                       "responses": {"200": _answer("the job", _JOB),
                                                     **_ERRORS}}},
        "/api/jobs/{job_id}/cancel": {"post": {
            "summary": "Cancel a queued job, or ask a running one to stop", "parameters": [_ID],
            "responses": _CANCEL_ANSWERS}},
        "/api/jobs/{job_id}/events": {"get": {
            "summary": "Server-Sent Events of the job's state changes, progress and logs",
            "parameters": [_ID, {"name": "Last-Event-ID", "in": "header", "schema": _COUNT}],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {}}}, **_ERRORS}}},
        "/api/jobs/{job_id}/artifacts/{name}": {"get": {
            "summary": "Download one of the job's artifacts (Range, If-None-Match: its sha256)",
            "parameters": [_ID, {"name": "name", "in": "path", "required": True,
                                 "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file",
                                  "content": {"application/octet-stream": {}}},
                          "206": {"description": "the ranges asked for"},
                          "304": {"description": "the client's copy is current"},
                          "409": _answer("the file no longer has the size its job "
                                         "recorded (artifact_changed)", _ERROR),
                          "416": _answer("no byte of the range is in the file "
                                         "(range_not_satisfiable)", _ERROR), **_ERRORS}}},
        "/api/jobs/{job_id}/retry": {"post": {
            "summary": "Re-queue a retrying, dead or cancelled job with fresh attempts",
            "parameters": [_ID],
            "responses": {"200": _answer("queued again", _JOB),
                          "409": _answer("not in a state that can be retried "
                                         "(not_retryable), or a unique job whose twin is "
                                         "live (unique_job_live)", _ERROR),
                          **_ERRORS}}},
        "/api/dead/retry": {"post": {
            "summary": "Re-queue every dead job", "responses": {"200": _answer(
                "how many", {"type": "object", "properties": {"retried": {"type": "integer"}}}),
                **_ERRORS}}},
        "/api/dead": {"delete": {
            "summary": "Delete every dead job and its history", "responses": {"200": _answer(
                "how many", {"type": "object", "properties": {"purged": {"type": "integer"}}}),
                **_ERRORS}}},
        "/api/queues": {"get": {
            "summary": "Each queue's jobs, limits, pause, throughput; rate-limited tasks",
            "responses": {"200": _answer("queues and rates", {"type": "object", "properties": {
                "queues": {"type": "array", "items": {"type": "object"}},
                "rates": {"type": "array", "items": {"type": "object"}}}}), **_ERRORS}}},
        **{f"/api/queues/{{name}}/{verb}": {"post": {
            "summary": summary,
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": NAME_PATTERN.pattern}}],
            "responses": {"200": _answer("the queue", {"type": "object", "properties": {
                "name": {"type": "string"}, "paused": {"type": "boolean"}}}),
                "422": _answer("no such queue (unknown_queue)", _ERROR), **_ERRORS}}}
            for verb, summary in (
                ("pause", "Pause a queue: its queued jobs wait, running ones finish"),
                ("resume", "Resume a paused queue"))},
        "/api/jobs/cancel": {"post": {
            "summary": "Cancel many jobs: waiting and queued ones at once, running ones "
                       "asked to stop",
            "description": "At least one filter, or \"all\": true for every job not yet "
                           "final; filters given with it still narrow. One "
                           "transaction; only the caller's own jobs.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "anyOf": [{"required": [name]} for name in (*BULK_CANCEL_FILTERS, "all")],
                "properties": {
                    "status": {"enum": [state.value for state in CANCELLABLE_STATES]},
                    "task": {"type": "string", "minLength": 1},
                    "queue": {"type": "string", "minLength": 1},
                    "all": {"const": True}}}}}},
            "responses": {"200": _answer("how many", {"type": "object", "properties": {
                "cancelled": {"type": "integer"}, "cancel_requested": {"type": "integer"}}}),
                **_ERRORS}}},
        "/api/submit": {"post": {
            "summary": "Frontend-compatible submit",
            "description": "Takes the Submit body, or, when the server sets compat_task, the "
                           "frontend's own form: a body without `task` is that task's "
                           "params, its `bypass_cache` taken out and honoured (without "
                           "compat_task: 422 compat_task_not_set). The answer adds job_id.",
            **_SUBMIT}},
        "/api/status/{job_id}": {"get": {"summary": "Frontend-compatible status",
                                         "parameters": [_ID],
                                         "responses": {"200": _answer("the job", _JOB),
                                                       **_ERRORS}}},
        "/api/cancel/{job_id}": {"post": {"summary": "Frontend-compatible cancel",
                                          "parameters": [_ID],
                                          "responses": _CANCEL_ANSWERS}},
        # /api/stats/events (the same as a stream, every second, without end) is left out:
        # a generated client or fuzzer would wait on it forever.
        "/api/stats": {"get": {"summary": "Queue depth, slots, throughput and timings",
                               "responses": {"200": _answer("stats", {"type": "object"}),
                                             **_ERRORS}}},
        "/api/schedules": {"get": {
            "summary": "The config's schedules: next and last fire, latest job, pause",
            "responses": {"200": _answer("the schedules", {"type": "object", "properties": {
                "schedules": {"type": "array", "items": _SCHEDULE}}}), **_ERRORS}}},
        "/api/schedules/{name}/trigger": {"post": {
            "summary": "Run the schedule's job now (its fire times keep their own jobs)",
            "parameters": [_NAME],
            "responses": {"202": _answer("queued", _JOB), **_SCHEDULE_ERRORS}}},
        "/api/schedules/{name}/pause": {"post": {
            "summary": "Pause a schedule: its fires make no jobs until it is resumed",
            "parameters": [_NAME],
            "responses": {"200": _answer("the schedule", _SCHEDULE), **_SCHEDULE_ERRORS}}},
        "/api/schedules/{name}/resume": {"post": {
            "summary": "Resume a schedule from now (fires missed while paused do not run)",
            "parameters": [_NAME],
            "responses": {"200": _answer("the schedule", _SCHEDULE), **_SCHEDULE_ERRORS}}},
        "/api/workflows": {"get": {
            "summary": "The tenant's latest workflows, newest first",
            "parameters": [{"name": "limit", "in": "query", "schema": {"anyOf": [
                {"type": "integer", "minimum": 1, "maximum": WORKFLOW_LIST_MAX},
                {"const": ""}]}}],
            "responses": {"200": _answer("the workflows", {"type": "object", "properties": {
                "workflows": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"type": "string"},
                    "final": {"type": "boolean"}, "steps": {"type": "integer"},
                    "done": {"type": "integer"},
                    "counts": {"type": "object"}, "created_at": {"type": "number"}}}}}}),
                **_ERRORS}}, "post": {
            "summary": "Create a workflow: every step, and its dependencies, in one "
                       "transaction",
            "description": "Each step is a Submit body, keyed by its name, and may also "
                           "carry `after` (the names of the steps it waits for). "
                           "Everything is validated first; nothing is written for a "
                           "refused body.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["steps"], "additionalProperties": False,
                "properties": {"steps": {
                    "type": "object", "minProperties": 1,
                    "propertyNames": {"pattern": NAME_PATTERN.pattern},
                    "additionalProperties": {"$ref": "#/components/schemas/Submit"}}}}}}},
            "responses": {"201": _answer("created", {"type": "object", "properties": {
                "id": {"type": "string"}, "steps": {"type": "object",
                                                    "additionalProperties": {
                                                        "type": "string"}}}}),
                          **_ERRORS, "422": _answer(
                              "a step a submit would refuse (with step), an after that "
                              "names no step (unknown_step), a cycle (workflow_cycle), "
                              "more than max_workflow_steps (too_many_steps), a parent "
                              "the tenant does not have (unknown_parent)", _ERROR),
                          "429": _TOO_MANY}}},
        "/api/workflows/{workflow_id}": {"get": {
            "summary": "A workflow's status, progress and steps",
            "parameters": [_WORKFLOW_ID],
            "responses": {"200": _answer("the workflow", _WORKFLOW), **_ERRORS}}},
        "/api/workflows/{workflow_id}/events": {"get": {
            "summary": "Server-Sent Events of every step (each names its step)",
            "parameters": [_WORKFLOW_ID,
                           {"name": "Last-Event-ID", "in": "header", "schema": _COUNT}],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {}}}, **_ERRORS}}},
        "/api/workflows/{workflow_id}/cancel": {"post": {
            "summary": "Cancel every step not yet final; running ones are asked to stop",
            "parameters": [_WORKFLOW_ID],
            "responses": {"200": _answer("cancelled", _WORKFLOW),
                          "202": _answer("running steps asked to stop", _WORKFLOW),
                          **_ERRORS}}},
        "/api/health": {"get": {"summary": "Database writable and pool alive; process tree (admin)",
                                "responses": {"200": {"description": "healthy"},
                                              "503": {"description": "unhealthy"}}}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string"}, "message": {"type": "string"}}},
        # depends_on and on_parent_failure (and a workflow step's after) are left out: they
        # name jobs and steps that must exist, which no schema can say, and a request the
        # schema calls valid must be accepted (tests/e2e/test_generated_requests.py).
        "Submit": {"type": "object", "required": ["task"], "additionalProperties": False,
                   "description": "Also depends_on (ids of the tenant's jobs this one "
                                  "waits for, at most max_parents; not with a delay) and "
                                  "on_parent_failure (cancel or run): see the README.",
                   "dependentRequired": {"concurrency_limit": ["concurrency_key"]},
                   "properties": {
                       "task": {"type": "string", "minLength": 1},
                       "params": {"type": "object"},
                       "queue": {"type": "string", "pattern": NAME_PATTERN.pattern},
                       "priority": {"type": ["integer", "null"],
                                    "minimum": PRIORITY_RANGE[0],
                                    "maximum": PRIORITY_RANGE[1]},
                       "max_attempts": {"type": ["integer", "null"], "minimum": 1,
                                        "maximum": MAX_ATTEMPTS_LIMIT},
                       "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
                       "memory_limit": {"anyOf": [
                           {"type": "integer", "minimum": 1, "maximum": MAX_MEMORY_LIMIT},
                           {"type": "string", "pattern": MEMORY_PATTERN},
                           {"type": "null"}]},
                       "backoff_base": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                        "maximum": MAX_BACKOFF},
                       "backoff_max": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                       "maximum": MAX_BACKOFF},
                       "cache_ttl": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                     "description": "Seconds a success of the same task "
                                                    "and params answers this submit (200, "
                                                    "Cache-Hit: true) instead of a run."},
                       "bypass_cache": {"type": ["boolean", "null"],
                                        "description": "Run anew despite a cached result; "
                                                       "the new one is cached."},
                       "unique": {"type": ["boolean", "null"],
                                  "description": "While a unique job of the same task and "
                                                 "params is scheduled, queued, running or "
                                                 "retrying, answer with it (200)."},
                       # Delayed jobs (api/delays.py): one of the two, never both.
                       "delay": {"type": ["number", "null"], "minimum": 0,
                                 "maximum": MAX_DELAY},
                       "run_at": {"anyOf": [
                           {"type": "number", "minimum": 0, "maximum": LATEST},
                           {"type": "string", "format": "date-time"}, {"type": "null"}]},
                       "concurrency_key": {"type": ["string", "null"], "minLength": 1,
                                           "maxLength": MAX_CONCURRENCY_KEY,
                                           "description": "Jobs of the tenant sharing this "
                                                          "key (a user id, say) run at most "
                                                          "concurrency_limit at a time."},
                       "concurrency_limit": {"type": ["integer", "null"], "minimum": 1,
                                             "maximum": MAX_CONCURRENCY,
                                             "description": "Default: the task's, else 1."}},
                   "not": {"required": ["delay", "run_at"]},
                   # A concurrency_limit limits the jobs of a concurrency_key: not without one.
                   "if": {"properties": {"concurrency_limit": {"type": "integer"}},
                          "required": ["concurrency_limit"]},
                   "then": {"properties": {"concurrency_key": {"type": "string"}},
                            "required": ["concurrency_key"]}},
        "Job": {"type": "object", "properties": {
            "id": {"type": "string"}, "task": {"type": "string"}, "queue": {"type": "string"},
            "priority": {"type": "integer"},
            "status": {"enum": [s.value for s in JobState]}, "final": {"type": "boolean"},
            "params": {"type": "object"}, "result": {}, "error": {"type": ["string", "null"]},
            "error_code": {"type": ["string", "null"]},
            "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"},
            "failures": {"type": "integer"}, "crashes": {"type": "integer"},
            "timeout": {"type": ["number", "null"]},
            "memory_limit": {"type": ["integer", "null"]},
            "backoff_base": {"type": "number"}, "backoff_max": {"type": "number"},
            "run_at": {"type": ["number", "null"]}, "peak_rss": {"type": ["integer", "null"]},
            "attempts_history": {"type": "array", "items": {"type": "object"}},
            "idempotency_key": {"type": ["string", "null"]},
            "cache_ttl": {"type": ["number", "null"]}, "bypass_cache": {"type": "boolean"},
            "unique": {"type": "boolean"},
            "schedule": {"type": ["string", "null"]},
            "scheduled_for": {"type": ["number", "null"]},
            "concurrency_key": {"type": ["string", "null"]},
            "concurrency_limit": {"type": ["integer", "null"]},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "on_parent_failure": {"enum": ["cancel", "run"]},
            "workflow_id": {"type": ["string", "null"]}, "step": {"type": ["string", "null"]},
            "parent_id": {"type": ["string", "null"]},
            "progress": {"type": ["number", "null"]},
            "progress_message": {"type": ["string", "null"]},
            "cancel_requested": {"type": "boolean"},
            "created_at": {"type": "number"}, "started_at": {"type": ["number", "null"]},
            "finished_at": {"type": ["number", "null"]},
            # GET /api/jobs/{id} only (lists leave it out): the files the job left.
            "artifacts": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "size": {"type": "integer"},
                "sha256": {"type": "string"}, "content_type": {"type": "string"},
                "url": {"type": "string"}}}}}},
    }},
}


async def openapi(request: Request) -> JSONResponse:
    # This server's registry and limits, so clients see exactly what they may submit: one
    # Submit variant per task, whose params are that task's published signature.
    svc = services(request)
    document = copy.deepcopy(DOCUMENT)
    schemas = document["components"]["schemas"]
    base = schemas.pop("Submit")
    base["properties"]["timeout"]["maximum"] = svc.config.max_timeout
    base["properties"]["cache_ttl"]["maximum"] = svc.config.max_cache_ttl
    limits = (f"At most {svc.config.max_params_bytes} bytes of JSON, lists and objects "
              f"nested at most {svc.config.max_params_depth} levels deep.")
    base["properties"]["params"]["description"] = limits
    variants = []
    for name, task in sorted((await svc.catalog.tasks()).items()):
        variant = copy.deepcopy(base)
        variant["properties"]["task"] = {"const": name}
        if task.params is not None:
            variant["properties"]["params"] = {**task.params, "description": limits}
            if task.params["required"]:
                variant["required"] = ["task", "params"]
        variants.append(variant)
    schemas["Submit"] = {"oneOf": variants} if variants else base
    batch = document["paths"]["/api/jobs/batch"]["post"]["requestBody"]["content"]
    batch["application/json"]["schema"]["properties"]["jobs"]["maxItems"] = \
        svc.config.max_batch
    flow = document["paths"]["/api/workflows"]["post"]["requestBody"]["content"]
    flow["application/json"]["schema"]["properties"]["steps"]["maxProperties"] = \
        svc.config.max_workflow_steps
    # A pause or resume may name the queues this server knows now (else 422 unknown_queue).
    queues = sorted(await known_queues(svc))
    for verb in ("pause", "resume"):
        [name] = document["paths"][f"/api/queues/{{name}}/{verb}"]["post"]["parameters"]
        name["schema"] = {"enum": queues}
    if authmode.mode(svc.config) == "keys":
        _require_keys(document)
    return JSONResponse(document)


def _require_keys(document: dict[str, Any]) -> None:
    """With auth = "keys": a Bearer key on every operation but the open health check, and
    the 401 and 403 that any of them may answer."""
    document["components"]["securitySchemes"] = {"key": {
        "type": "http", "scheme": "bearer",
        "description": "An API key from `scholarsource keys create` (ss_<id>_<secret>)."}}
    document["security"] = [{"key": []}]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if access.POLICY.get(path, {}).get(method.upper()) == access.OPEN:
                operation["security"] = []
                continue
            operation["responses"]["401"] = _answer("no valid key (unauthorized)", _ERROR)
            operation["responses"]["403"] = _answer("the key's role may not (forbidden)",
                                                    _ERROR)


routes = [Route("/api/openapi.json", openapi, methods=["GET"])]
