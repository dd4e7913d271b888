"""The access log: one line per HTTP request, on the logger `scholarsource.access`.

It goes through the same handler and formatter as every other line (text or JSON, see
scholarsource/logs.py). It records the path only: never the query string or the body, either
of which may carry a secret.
"""

from __future__ import annotations

import logging

from starlette.middleware import Middleware
from starlette.types import Scope

from scholarsource.api.observer import ResponseObserver
from scholarsource.config import Config

log = logging.getLogger("scholarsource.access")


class AccessLog(ResponseObserver):
    """One line per request, written when the response ends."""

    def wanted(self) -> bool:
        return log.isEnabledFor(logging.INFO)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        log.info("request", extra={
            "method": scope["method"], "path": scope["path"], "status": status,
            "duration_ms": round(seconds * 1000, 2), "client": client[0] if client else None})


def middleware(config: Config) -> list[Middleware]:
    """The access log as Starlette middleware, when `access_log` is on."""
    return [Middleware(AccessLog)] if config.access_log else []
