"""Reading a job's event stream (Server-Sent Events) and resuming it where it broke.

`SseDecoder` follows the WHATWG event-stream rules: `field: value` lines, comments (`:`),
multi-line `data`, and an event dispatched at each blank line. `EventFeed` is one
`events()` or `wait()` call's state, without I/O: the last event id (sent back as
Last-Event-ID after a dropped connection, so nothing is lost or repeated), the retries, and
the deadline.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from scholarsource.client.calls import error_for
from scholarsource.client.errors import ServerError, WaitTimeout
from scholarsource.client.models import Event
from scholarsource.client.retry import Attempts, RetryPolicy

# The server sends a comment every 15 s on a quiet stream: three missed mean the connection
# is dead (a peer gone without a FIN), and the feed resumes on a new one.
READ_TIMEOUT = 45.0


@dataclass(frozen=True)
class SseMessage:
    """One dispatched event: its id (None: the stream gave none), type and data."""

    id: str | None
    event: str
    data: str


class SseDecoder:
    """Lines in, messages out."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseMessage | None:
        """Take one line (without its end); a message at the blank line that ends one."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = SseMessage(self._id, self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class EventFeed:
    """The state of one job's stream across its connections."""

    def __init__(self, job_id: str, after: int, policy: RetryPolicy, url: str,
                 deadline: float | None = None) -> None:
        self.path = f"/api/jobs/{quote(job_id, safe='')}/events"
        self.job_id, self.last_id, self.deadline = job_id, after, deadline
        self.attempts = Attempts(policy, url, resend=True)
        self.decoder = SseDecoder()
        self.ended = False  # the job's final event was seen

    def connect(self) -> tuple[dict[str, str], httpx.Timeout]:
        """Headers and timeout for the next connection; WaitTimeout past the deadline.
        The read timeout ends at the deadline at the latest; the clients also cut a stream
        that is still delivering events when the deadline comes."""
        read_timeout = min(READ_TIMEOUT, self.remaining())
        self.decoder = SseDecoder()
        return ({"Accept": "text/event-stream", "Last-Event-ID": str(self.last_id)},
                httpx.Timeout(READ_TIMEOUT, read=read_timeout))

    def opened(self, response: httpx.Response) -> float | None:
        """None when the stream is open; else the wait before trying again (503, 429).
        Raises the answer's error otherwise; an error body must have been read."""
        if response.status_code == 200:
            return None
        wait = self.attempts.after_response(response)
        if wait is None:
            raise error_for(response)
        return wait

    def line(self, line: str) -> Event | None:
        """One line of the stream: the event it completes, if any."""
        message = self.decoder.feed(line)
        if message is None or message.id is None:
            return None  # every event the server sends has an id; nothing else is a job's
        try:
            event = Event(int(message.id), message.event, json.loads(message.data))
        except ValueError:
            raise ServerError(f"the stream of job {self.job_id} sent an event that is not "
                              f"the server's (id {message.id[:20]!r})") from None
        self.last_id, self.ended = event.id, self.ended or event.final
        self.attempts.reset()
        return event

    def dropped(self, exc: httpx.TransportError) -> float:
        """The wait before resuming after a broken connection; WaitTimeout past the
        deadline, Unreachable once the retries are spent."""
        left = self.remaining()
        return min(self.attempts.after_error(exc), left)

    def remaining(self) -> float:
        """Seconds to the deadline (READ_TIMEOUT with none); WaitTimeout once past it."""
        if self.deadline is None:
            return READ_TIMEOUT
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"job {self.job_id} did not end in time")
        return left
