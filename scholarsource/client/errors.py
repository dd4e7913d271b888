"""Every exception the Python client raises.

    ClientError                  base: the server's `error` code, its message, the HTTP status
    ├── InvalidRequest           400, 405, 408, 413-415, 422, 431: the request itself is wrong
    ├── Unauthorized             401 no key, or a wrong or revoked one
    ├── Forbidden                403 the key's role may not do this
    ├── NotFound                 404 no such job for this key's tenant
    ├── Conflict                 409 the job is in a state that does not allow it
    ├── RateLimited              429 over a rate or a quota; `retry_after` seconds
    ├── ServerError              500 and any other answer the client does not expect
    ├── Unavailable              503 the store cannot take writes now; `retry_after` seconds
    │   └── Unreachable          no answer at all: refused, reset, timed out
    └── WaitTimeout              `wait` ran out of time (also a TimeoutError)

Named apart from scholarsource.errors, whose ScholarSourceError tree is the server's own.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the client raises: `code` is the server's stable error code."""

    code = "client_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 body: dict[str, Any] | None = None, retry_after: float | None = None
                 ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.body = body or {}  # the whole error answer: `field`, `index`, `limit`...
        self.retry_after = retry_after

    def __str__(self) -> str:
        # The server's code when it sent one; an answer it did not code speaks for itself.
        return f"{self.code}: {self.message}" if self.body else self.message


class InvalidRequest(ClientError):
    """Raised when the server refuses the request as malformed or invalid (4xx)."""

    code = "invalid_request"


class Unauthorized(ClientError):
    """Raised when the API key is missing, wrong or revoked (401)."""

    code = "unauthorized"


class Forbidden(ClientError):
    """Raised when the key's role may not do what was asked (403)."""

    code = "forbidden"


class NotFound(ClientError):
    """Raised when the job does not exist for this key's tenant (404)."""

    code = "not_found"


class Conflict(ClientError):
    """Raised when the job's state does not allow the operation (409)."""

    code = "conflict"


class RateLimited(ClientError):
    """Raised when a rate or quota refuses the request (429) after the client's retries;
    `retry_after` says when to try again."""

    code = "rate_limited"


class ServerError(ClientError):
    """Raised on a 500 or any answer the client does not expect."""

    code = "internal_error"


class Unavailable(ClientError):
    """Raised when the server cannot serve now (503) after the client's retries."""

    code = "unavailable"


class Unreachable(Unavailable):
    """Raised when no answer came (refused, reset, timed out) after the client's retries."""

    code = "unreachable"


class WaitTimeout(ClientError, TimeoutError):
    """Raised when `wait` gives up before the job ended; the job itself goes on."""

    code = "wait_timeout"


_BY_STATUS: dict[int, type[ClientError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 429: RateLimited,
    503: Unavailable}


def error_class(status: int) -> type[ClientError]:
    """The exception for an error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return InvalidRequest if 400 <= status < 500 else ServerError
