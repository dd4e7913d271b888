"""When the client sends a request again: on no answer, 503 and 429, bounded, with backoff.

A request that may have reached the server (the connection broke after it was sent) is sent
again only when that cannot do it twice: reads, cancels, and submits, which always carry an
Idempotency-Key. A 429 or 503 did nothing, so any request may follow one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from scholarsource.client.errors import Unreachable

RETRY_STATUSES = frozenset({429, 503})
# Raised before a byte of the request left: sending it again is always safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The connection failed after the request may have been sent. Anything else (a bad URL, a
# local protocol error) fails the same way every time.
MAYBE_SENT = (httpx.ReadError, httpx.WriteError, httpx.ReadTimeout, httpx.WriteTimeout,
              httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait. The n-th retry waits `backoff * 2**(n-1)`
    seconds, at most `max_backoff`, jittered down to half so that many clients spread out;
    or what `Retry-After` says, unless that is over `max_retry_after`: then the error is
    raised at once, for the caller to decide."""

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def wait(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds before retry number `retry` (from 1), or None: give up."""
        if retry > self.retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return min(self.max_backoff, self.backoff * 2.0 ** (retry - 1)) * random.uniform(0.5, 1)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds: a number, or an HTTP date (RFC 9110 10.2.3)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


class Attempts:
    """One call's retries: told each outcome, it says how long to wait before the next try
    (None for a response: keep it), or raises once no retry is left."""

    def __init__(self, policy: RetryPolicy, url: str, resend: bool) -> None:
        self.policy, self.url, self.resend = policy, url, resend
        self.retries = 0

    def after_response(self, response: httpx.Response) -> float | None:
        """None to keep this response (a success, an error to raise, or no retry left)."""
        if response.status_code not in RETRY_STATUSES:
            return None
        self.retries += 1
        return self.policy.wait(self.retries, retry_after(response))

    def after_error(self, exc: httpx.TransportError) -> float:
        """The wait before trying again after no answer; Unreachable when it may not."""
        retryable = isinstance(exc, NOT_SENT) or (self.resend and isinstance(exc, MAYBE_SENT))
        self.retries += 1
        wait = self.policy.wait(self.retries) if retryable else None
        if wait is None:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
        return wait

    def reset(self) -> None:
        """A stream delivered: a later drop starts counting afresh."""
        self.retries = 0
