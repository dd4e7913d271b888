"""Every exception ScholarSource raises on purpose.

    ScholarSourceError
    ├── ConfigError              bad configuration; the CLI exits with EXIT_CONFIG
    ├── TaskError                task registry problems
    │   └── UnknownTaskError     a name that no registered task has
    ├── Retry                    raised by a task to ask for another attempt later
    ├── ChildRefused             a task's ctx.submit or ctx.continue_with that a submit refuses
    ├── StoreError               the database cannot do what was asked
    │   ├── StoreUnavailable     locked past the busy timeout, disk full, read-only
    │   └── BackupError          a backup cannot be taken or written
    │       └── BackupUnsupported  the store does not copy itself (PostgreSQL: pg_dump)
    ├── DataDirInUse             another server holds the data directory's lock
    └── ApiError                 a client-facing error: stable `code`, HTTP `status`, message
        ├── BadRequest           400 malformed JSON
        ├── Unauthorized         401 no valid API key or dashboard session (auth = "keys")
        ├── Forbidden            403 a cross-site state change, or a role that may not
        ├── NotFound             404 unknown job or route
        ├── MethodNotAllowed     405
        ├── Conflict             409 the job is in the wrong state
        ├── PayloadTooLarge      413 body over max_body_bytes
        ├── UnsupportedMedia     415 body is not application/json
        ├── ValidationFailed     422 wrong fields, wrong types, unknown task
        ├── RangeUnsatisfiable   416 a Range header past the end of an artifact's file
        │   └── UnknownParent    422 a depends_on that names no job of the tenant
        ├── TooManyRequests      429 a submit over a rate or a max_queued
        ├── ServiceUnavailable   503 the store cannot take writes right now
        │   (the HTTP edge, before any route: api/hosts.py, api/headlimits.py)
        ├── HeaderTimeout        408 the request's headers did not arrive within header_timeout
        ├── RequestLineTooLong   414 request line over max_header_bytes
        ├── HostNotAllowed       421 a Host header that allowed_hosts does not name
        └── HeadersTooLarge      431 headers over max_header_bytes or max_headers

The API turns any ApiError into `{"error": code, "message": text}`; anything else becomes a
JSON 500 whose body never holds a traceback.
"""

from __future__ import annotations

from typing import Any


class ScholarSourceError(Exception):
    """Base of every error ScholarSource raises on purpose."""


class ConfigError(ScholarSourceError):
    """Raised when a setting is unknown, malformed or out of range."""


class TaskError(ScholarSourceError):
    """Raised when a task cannot be registered or loaded."""


class UnknownTaskError(TaskError):
    """Raised when a job names a task that is not registered."""


class Retry(ScholarSourceError):
    """Raised by a task to end this attempt as failed and ask for the next one `after`
    seconds from now (instead of the job's backoff). It spends an attempt: past
    `max_attempts` the job is dead."""

    def __init__(self, message: str = "retry requested", *, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class ChildRefused(ScholarSourceError):
    """Raised in a task when ctx.submit or ctx.continue_with names a child that a submit
    would refuse (an unknown task, a bad option); `code` is the API's error code for it."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class StoreError(ScholarSourceError):
    """Raised when the store cannot carry out an operation."""


class StoreUnavailable(StoreError):
    """Raised when the database is locked past the busy timeout, full or read-only."""


class BackupError(StoreError):
    """Raised when a backup cannot be taken or written; the message says why."""


class BackupUnsupported(BackupError):
    """Raised when a store cannot copy itself (PostgreSQL); the message names the tool to
    use instead (pg_dump) and how."""


class DataDirInUse(ScholarSourceError):
    """Raised when another server holds the data directory's lock (EXIT_DATA_DIR_IN_USE)."""


class ApiError(ScholarSourceError):
    """Raised when a request cannot be served; carries a stable code and an HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        """The response body: error code, human message and any extra fields."""
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(ApiError):
    """Raised when the body is not well-formed JSON."""

    status, code = 400, "malformed_json"


class Unauthorized(ApiError):
    """Raised when auth = "keys" and a request has no valid key or dashboard session."""

    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        # RFC 6750: a 401 names the scheme the client should use.
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="scholarsource"'})


class Forbidden(ApiError):
    """Raised when a request is refused: a cross-site state change, or a key whose role may
    not do what it asks."""

    status, code = 403, "forbidden"


class NotFound(ApiError):
    """Raised when a job (or route) does not exist for this tenant."""

    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    """Raised when a route exists but not for this HTTP method."""

    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    """Raised when a job is in a state that does not allow the operation."""

    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    """Raised when a request body exceeds max_body_bytes."""

    status, code = 413, "payload_too_large"


class UnsupportedMedia(ApiError):
    """Raised when a body is sent with a content type other than application/json."""

    status, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    """Raised when fields are missing, of the wrong type, or name an unknown task."""

    status, code = 422, "invalid_request"


class RangeUnsatisfiable(ApiError):
    """Raised when a download's Range header asks only for bytes past the end of the file."""

    status, code = 416, "range_not_satisfiable"
class UnknownParent(ValidationFailed):
    """Raised when a submit depends on a job its tenant does not have (unknown, or another
    tenant's: both answer alike, so the error tells nothing of other tenants' jobs)."""

    code = "unknown_parent"


class TooManyRequests(ApiError):
    """Raised when a submit is over a rate (rate_limited) or a max_queued (quota_exceeded);
    its Retry-After and RateLimit-* headers say when to come back."""

    status, code = 429, "rate_limited"


class ServiceUnavailable(ApiError):
    """Raised when the store cannot take writes right now; the client may retry."""

    status, code = 503, "unavailable"


def store_unavailable() -> ServiceUnavailable:
    """What a client gets when the store cannot answer (StoreUnavailable): retry in a
    second."""
    return ServiceUnavailable("the job store cannot answer right now; retry shortly",
                              headers={"Retry-After": "1"})


# The HTTP edge: answered before any route runs.


class HeaderTimeout(ApiError):
    """Raised when a connection has not sent a whole request head within header_timeout."""

    status, code = 408, "header_timeout"


class RequestLineTooLong(ApiError):
    """Raised when the request line alone is over max_header_bytes."""

    status, code = 414, "request_line_too_long"


class HostNotAllowed(ApiError):
    """Raised when the Host header names a host that allowed_hosts does not (DNS
    rebinding)."""

    status, code = 421, "host_not_allowed"


class HeadersTooLarge(ApiError):
    """Raised when a request's head is over max_header_bytes or has over max_headers
    headers."""

    status, code = 431, "headers_too_large"
