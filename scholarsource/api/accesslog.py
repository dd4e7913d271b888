"""The access log: one line per HTTP request, on the logger `scholarsource.access`.

It goes through the same handler and formatter as every other line (text or JSON, see
scholarsource/logs.py). It records the path only: never the query string or the body, either
of which may carry a secret.
"""

from __future__ import annotations

import logging
import time

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scholarsource.config import Config

log = logging.getLogger("scholarsource.access")


class AccessLog:
    """Pure ASGI middleware: Starlette's BaseHTTPMiddleware would get between an event stream
    and its client. The line is written when the response ends, so a stream's duration is
    how long it stayed open."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            log.info("request", extra={
                "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                "client": client[0] if client else None})


def middleware(config: Config) -> list[Middleware]:
    """The access log as Starlette middleware, when `access_log` is on."""
    return [Middleware(AccessLog)] if config.access_log else []
