"""Logging for every ScholarSource process: one line per record on stderr, as text or JSON.

Both formats carry the time, level, logger, message, pid and the process's role (master,
api, pool), plus any `extra={...}` fields of the call: JSON as keys of the object, text as
`key=value` after the message. Gunicorn's and uvicorn's own lines go through the same
formatter (see `GunicornLogger`), so a log holds one format whatever wrote it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger as _BaseGunicornLogger

_TEXT = "%(asctime)s [%(process)d] [%(role)s] [%(levelname)s] %(name)s: %(message)s"
_DATE = "%Y-%m-%d %H:%M:%S %z"
# What every LogRecord has; anything else on a record came from `extra`. uvicorn adds an
# ANSI-coloured copy of some messages as `color_message`: noise in a log file.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName", "role", "color_message"}

_state = {"role": "main", "format": "text"}


def set_role(role: str) -> None:
    """Name this process's part (master, api, pool) in every line it logs from now on;
    a child forked afterwards keeps it until it sets its own."""
    _state["role"] = role


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed with `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`time [pid] [role] [LEVEL] logger: message key=value ...`, then any traceback."""

    def __init__(self) -> None:
        super().__init__(_TEXT, _DATE)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.role = _state["role"]
        pairs = "".join(f" {key}={_text_value(value)}" for key, value in extras(record).items())
        return super().formatMessage(record) + pairs


# A value with a space, a quote or an equals sign (or none at all) is quoted as JSON text.
_NEEDS_QUOTES = re.compile(r'[\s"=]|^$')


def _text_value(value: Any) -> str:
    # The common cases skip json.dumps: the job lines' many fields cost 2-3 us each with it.
    if value is None or isinstance(value, bool):
        return "null" if value is None else "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if _NEEDS_QUOTES.search(text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, role, the extras, and
    `exception` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            "role": _state["role"],
        }
        entry.update((k, v) for k, v in extras(record).items() if k not in entry)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter() -> logging.Formatter:
    """The formatter for the format `setup` chose."""
    return JsonFormatter() if _state["format"] == "json" else TextFormatter()


def setup(level: str = "info", fmt: str = "text", name: str = "scholarsource") -> None:
    """Send the logger `name` (ours by default; "" is the root) to stderr at `level`, as
    `fmt` (idempotent)."""
    _state["format"] = fmt
    logger = logging.getLogger(name)
    logger.setLevel(level.upper())
    handler = next((h for h in logger.handlers if getattr(h, "_scholarsource", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._scholarsource = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    handler.setFormatter(formatter())
    logger.propagate = False


class GunicornLogger(_BaseGunicornLogger):  # type: ignore[misc]  # gunicorn is untyped
    """Gunicorn's logger with our formatter on its handlers; uvicorn's workers log through
    the same handlers, so their lines match too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter())


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
