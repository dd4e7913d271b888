"""Logging for every ScholarSource process: one line per record on stderr, as text or JSON.

Both formats carry the time, level, logger, message, pid and the process's role (master,
api, pool), plus any `extra={...}` fields of the call: JSON as keys of the object, text as
`key=value` after the message. Gunicorn's and uvicorn's own lines go through the same
formatter (see `GunicornLogger`), so a log holds one format whatever wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger as _BaseGunicornLogger

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


def render(fmt: str, created: float, level: str, name: str, message: str,
           fields: dict[str, Any], pid: int | None = None) -> str:
    """One line as `fmt` ("text" or "json"): what both formatters write, and what
    `write_lines` writes without a LogRecord."""
    role, pid = _state["role"], os.getpid() if pid is None else pid
    if fmt == "json":
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": level, "logger": name, "message": message, "pid": pid, "role": role}
        entry.update((k, v) for k, v in fields.items() if k not in entry)
        return json.dumps(entry, default=str, ensure_ascii=False)
    pairs = "".join(f" {key}={_text_value(value)}" for key, value in fields.items())
    return f"{_stamp(created)} [{pid}] [{role}] [{level}] {name}: {message}{pairs}"


_second: list[Any] = [-1, ""]


def _stamp(created: float) -> str:
    # Text times have a resolution of one second: each second is formatted once.
    second = int(created)
    if second != _second[0]:
        _second[:] = [second, time.strftime(_DATE, time.localtime(second))]
    return str(_second[1])


class TextFormatter(logging.Formatter):
    """`time [pid] [role] [LEVEL] logger: message key=value ...`, then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = render("text", record.created, record.levelname, record.name,
                      record.getMessage(), extras(record), record.process)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


# A value with a space, a quote or an equals sign (or none at all) is quoted as JSON text.
_NEEDS_QUOTES = re.compile(r'[\s"=]|^$')


def _text_value(value: Any) -> str:
    # The common cases skip json.dumps: the job lines' many fields cost 2-3 us each with it.
    if type(value) is str:  # most values: ids and names, tested first
        return json.dumps(value) if _NEEDS_QUOTES.search(value) else value
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
        fields = extras(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return render("json", record.created, record.levelname, record.name,
                      record.getMessage(), fields, record.process)


Line = tuple[float, int, str, dict[str, Any]]  # time, level, message, fields


def write_lines(logger: logging.Logger, lines: list[Line]) -> None:
    """Log many records at once, in one write: for the job lines, which come by the
    thousand per second, a LogRecord and a flush each cost the pool about a third of its
    time per no-op job. Falls back to ordinary records where our handler is not the one in
    charge (tests, embedding)."""
    lines = [line for line in lines if logger.isEnabledFor(line[1])]
    if not lines:
        return
    handler = _our_handler(logger)
    if handler is None:
        for _, level, message, fields in lines:
            logger.log(level, message, extra=fields)
        return
    fmt, pid = _state["format"], os.getpid()  # once, not per line (a batch logs 1,000)
    text = "".join(render(fmt, created, logging.getLevelName(level), logger.name, message,
                          fields, pid) + "\n" for created, level, message, fields in lines)
    with handler.lock or contextlib.nullcontext():
        handler.stream.write(text)
        handler.flush()


def _our_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.StreamHandler) and \
                    getattr(handler, "_scholarsource", False):
                return handler
        if current.handlers or not current.propagate:
            return None
        current = current.parent
    return None


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
