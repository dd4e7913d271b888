"""A pure ASGI middleware base for what watches each response: the access log and the request
metrics. Pure ASGI, because Starlette's BaseHTTPMiddleware would get between an event stream
and its client."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseObserver:
    """Runs the app, then calls `observe(scope, status, seconds)` once the response has ended
    (so a stream's duration is how long it stayed open; 500 if the app raised before it
    answered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def wanted(self) -> bool:
        """Whether to observe at all right now (checked per request)."""
        return True

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.wanted():
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.observe(scope, status, time.perf_counter() - start)
