"""Limits on the request head, enforced where uvicorn reads it, before any app code runs.

httptools, uvicorn's default parser, has no limit of its own: it gathers a header's value by
concatenation until the line ends, so an endless header kept a worker at full CPU and grew
it by hundreds of MB until Gunicorn killed it; and nothing timed out a connection that never
finished its headers. This subclass of uvicorn's HttpToolsProtocol counts each request head's
bytes before the parser sees them (max_header_bytes), counts its header lines (max_headers),
and gives each head header_timeout seconds, from the connection's start or the request's
first byte. uvicorn's h11 protocol has a size limit, but costs far more CPU per request.

A refused request gets a JSON error (431, 414 or 408) and `connection: close`. The server then
stops sending, and reads and drops what the client still sends for a moment before closing:
closing with unread data would reset the connection, and with it the client's copy of the
answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from scholarsource.config import Config
from scholarsource.errors import (
    ApiError,
    BadRequest,
    HeadersTooLarge,
    HeaderTimeout,
    RequestLineTooLong,
)
from scholarsource.metrics.counters import REJECTED

# Depend on what we override: a uvicorn without these hooks would run unguarded, so fail at
# import, in the worker's boot, instead (pyproject.toml pins the range this was written for).
_HOOKS = ("connection_made", "connection_lost", "data_received", "on_message_begin",
          "on_header", "on_headers_complete", "on_message_complete", "send_400_response")
_missing = [name for name in _HOOKS if not callable(getattr(HttpToolsProtocol, name, None))]
if _missing:
    raise ImportError(f"uvicorn's HttpToolsProtocol lacks {', '.join(_missing)}: this uvicorn "
                      "is not one scholarsource supports (see pyproject.toml)")

HEAD_END = b"\r\n\r\n"
# How long a refused connection is drained before it is closed.
LINGER_SECONDS = 2.0


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is already recorded."""


def _settings(config: UvicornConfig) -> Config:
    """Our Config, from the app uvicorn serves: its lifespan has run before any connection."""
    services = getattr(getattr(config.app, "state", None), "services", None)
    if services is None:
        raise RuntimeError("HeadLimitedProtocol serves scholarsource's app only")
    settings: Config = services.config
    return settings


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size, a header count and a deadline per head."""

    def __init__(self, config: UvicornConfig, server_state: ServerState,
                 app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None
                 ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = _settings(config)
        self.max_head = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.head_timeout = settings.header_timeout
        self.refusal: ApiError | None = None
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0
        self._line_bytes: int | None = None  # the request line's length, once it ended
        self._tail = b""  # the last bytes of the head so far: HEAD_END may span two reads
        self._headers = 0
        # The head's deadline, and one timer per connection that checks it when it fires:
        # re-armed only then, so a request costs no timer of its own (a TimerHandle made
        # and cancelled per request was ~3 us of the API's CPU).
        self._deadline: float | None = None  # None: not in a head
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return  # draining a refused connection
        if self._in_head and self._count_head(data):
            return
        super().data_received(data)

    def _count_head(self, data: bytes) -> bool:
        """Count the head's share of `data`; True if that put it over the limit (refused)."""
        seen = self._tail + data
        end = seen.find(HEAD_END)
        part = len(data) if end < 0 else end + len(HEAD_END) - len(self._tail)
        self._tail = seen[-(len(HEAD_END) - 1):]
        if self._line_bytes is None and (newline := data.find(b"\n", 0, part)) >= 0:
            self._line_bytes = self._head_bytes + newline
        self._head_bytes += part
        if self._head_bytes <= self.max_head:
            return False
        if self._line_bytes is None or self._line_bytes > self.max_head:
            self._refuse(RequestLineTooLong(f"the request line is over {self.max_head} bytes"))
        else:
            self._refuse(HeadersTooLarge(f"the request head is over {self.max_head} bytes"))
        return True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers = 0
        if self._deadline is None:  # a request after a keep-alive pause: its own deadline
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > self.max_headers:
            self.refusal = HeadersTooLarge(f"the request has over {self.max_headers} headers")
            raise _Refused  # uvicorn answers the parser error with send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes, self._line_bytes, self._tail = False, 0, None, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a parser error: JSON like every other error, and ours when a
        # limit stopped the parser.
        self._refuse(self.refusal or BadRequest("the request is not valid HTTP/1.1",
                                                code="malformed_http"))

    def _arm(self) -> None:
        self._deadline = self.loop.time() + self.head_timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._head_timed_out)

    def _disarm(self) -> None:
        self._deadline = None  # the timer, if any, finds nothing to do

    def _cancel(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._deadline is None:
            return  # the head arrived; the next one arms the timer again
        if self.loop.time() < self._deadline:  # armed for an earlier head: wait for this one
            self._timer = self.loop.call_at(self._deadline, self._head_timed_out)
            return
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a pipelined head waits behind a response still being sent
        elif self._head_bytes:
            self._refuse(HeaderTimeout(f"the request head did not arrive within "
                                       f"{self.head_timeout:g}s"))
        elif not self.transport.is_closing():
            self.transport.close()  # connected and sent nothing: nobody to answer

    def _refuse(self, error: ApiError) -> None:
        """Answer `error`, stop sending, and close after draining what is in flight."""
        self.refusal = error
        self._cancel()
        REJECTED.labels(error.code).inc()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined head behind a response: no room to answer
            return
        body = json.dumps(error.to_json()).encode()
        head = [STATUS_LINE[error.status]]
        head += [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
