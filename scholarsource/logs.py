"""Logging for every ScholarSource process: one plain line per record on stderr."""

from __future__ import annotations

import asyncio
import logging
import sys

_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def setup(level: str = "info") -> None:
    """Send the `scholarsource` loggers to stderr at `level` (idempotent)."""
    logger = logging.getLogger("scholarsource")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_scholarsource", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
        handler._scholarsource = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


class _ShutdownCancels(logging.Filter):
    """Turns uvicorn's "Exception in ASGI application" for a request it cancelled on
    purpose at shutdown (an open event stream past timeout_graceful_shutdown) into one
    plain line: nothing failed, the client reconnects with Last-Event-ID."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError) and "graceful shutdown" in str(error):
            record.msg, record.args, record.exc_info = "open request cut at shutdown", (), None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_shutdown_cancels() -> None:
    """Install the filter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _ShutdownCancels) for f in logger.filters):
        logger.addFilter(_ShutdownCancels())
