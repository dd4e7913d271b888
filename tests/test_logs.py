"""Log lines as text and JSON, Gunicorn's lines in the same format, the access log, and no
secrets in either."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource import logs
from scholarsource.api.accesslog import AccessLog
from scholarsource.config import Config, load_config
from scholarsource.errors import ConfigError

JOB = {"job_id": "oP0ZjsoNDpdHsYpsKYhfSw", "task": "sleep", "queue": "default", "attempt": 2,
       "duration": 1.5, "outcome": "failed"}


class Collect(logging.Handler):
    """Keeps what it is given, formatted by the formatter under test."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Any]:
    """capture(formatter) -> handler on `scholarsource.test`, removed afterwards."""
    logger = logging.getLogger("scholarsource.test")
    logger.setLevel(logging.DEBUG)
    handlers: list[Collect] = []

    def attach(formatter: logging.Formatter) -> Collect:
        handler = Collect(formatter)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield attach
    for handler in handlers:
        logger.removeHandler(handler)
    logs.set_role("main")


def test_json_lines_carry_the_fields_and_every_extra(capture: Any) -> None:
    out = capture(logs.JsonFormatter())
    logs.set_role("pool")
    logging.getLogger("scholarsource.test").warning("job %s failed", "x", extra=JOB)
    entry = json.loads(out.lines[0])
    assert {k: entry[k] for k in ("level", "logger", "message", "role")} == {
        "level": "WARNING", "logger": "scholarsource.test", "message": "job x failed",
        "role": "pool"}
    assert isinstance(entry["pid"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert {k: entry[k] for k in JOB} == JOB


def test_json_keeps_a_traceback_in_one_line_and_never_fails_on_odd_values(
        capture: Any) -> None:
    out = capture(logs.JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("scholarsource.test").exception("it broke", extra={"obj": object(),
                                                                           "level": "x"})
    assert len(out.lines[0].splitlines()) == 1
    entry = json.loads(out.lines[0])
    assert entry["level"] == "ERROR"  # an extra cannot overwrite a standard field
    assert "ValueError: boom" in entry["exception"]
    assert entry["obj"].startswith("<object")


def test_text_lines_append_extras_as_key_value(capture: Any) -> None:
    out = capture(logs.TextFormatter())
    logs.set_role("api")
    logging.getLogger("scholarsource.test").info(
        "state change", extra={**JOB, "error": "timeout: after 5s", "empty": ""})
    line = out.lines[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \[\d+\] \[api\] \[INFO\] "
                    r"scholarsource\.test: state change ", line)
    assert line.endswith(' job_id=oP0ZjsoNDpdHsYpsKYhfSw task=sleep queue=default attempt=2 '
                         'duration=1.5 outcome=failed error="timeout: after 5s" empty=""')


def test_setup_switches_the_format_of_the_one_handler() -> None:
    logger = logging.getLogger("scholarsource")
    try:
        logs.setup("info", "json")
        logs.setup("debug", "text")
        ours = [h for h in logger.handlers if getattr(h, "_scholarsource", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.TextFormatter)
        assert logger.level == logging.DEBUG
        logs.setup("info", "json")
        assert isinstance(ours[0].formatter, logs.JsonFormatter)
    finally:
        logs.setup("info", "text")


def test_gunicorns_own_lines_use_our_formatter() -> None:
    from gunicorn.config import Config as GunicornConfig

    try:
        logs.setup("info", "json")
        cfg = GunicornConfig()
        cfg.set("errorlog", "-")
        glog = logs.GunicornLogger(cfg)
        assert glog.error_log.handlers
        assert all(isinstance(h.formatter, logs.JsonFormatter) for h in glog.error_log.handlers)
    finally:
        logs.setup("info", "text")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "text"), ({"SCHOLARSOURCE_LOG_FORMAT": "JSON"}, "json")])
def test_log_format_is_a_setting(env: dict[str, str], expected: str) -> None:
    assert load_config(env=env).log_format == expected


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="log_format must be one of text, json"):
        load_config(env={"SCHOLARSOURCE_LOG_FORMAT": "xml"})


def test_no_setting_can_leak_a_secret_through_a_log_line() -> None:
    # Nothing in Config is secret today. Whoever adds a key, token or password must mask it
    # in Config's repr (httpx does this for proxy passwords) before this passes again.
    secret_like = re.compile(r"secret|password|passwd|token|api_?key|credential", re.I)
    for f in fields(Config):
        if secret_like.search(f.name):
            value = getattr(Config(), f.name)
            assert not value or str(value) not in repr(Config()), f.name


# -- the access log --------------------------------------------------------------------------

def _app() -> AccessLog:
    async def ok(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True}, status_code=201)

    async def broken(request: Request) -> JSONResponse:
        raise RuntimeError("bug")

    return AccessLog(Starlette(routes=[Route("/ok", ok, methods=["POST"]),
                                       Route("/broken", broken)]))


@pytest.fixture
def access() -> Iterator[Collect]:
    logger = logging.getLogger("scholarsource.access")
    handler = Collect(logs.JsonFormatter())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _requests(*calls: tuple[str, str, dict[str, Any]]) -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for method, url, kwargs in calls:
                await client.request(method, url, **kwargs)

    asyncio.run(run())


def test_one_access_line_per_request_with_the_path_only(access: Collect) -> None:
    _requests(("POST", "/ok?api_key=hunter2", {"json": {"password": "hunter3"}}),
              ("GET", "/missing", {}), ("GET", "/broken", {}))
    entries = [json.loads(line) for line in access.lines]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/ok", 201), ("GET", "/missing", 404), ("GET", "/broken", 500)]
    assert all(e["logger"] == "scholarsource.access" and e["duration_ms"] >= 0
               and e["client"] == "127.0.0.1" for e in entries)
    assert "hunter" not in "".join(access.lines)


def test_no_access_line_when_the_level_is_above_info(access: Collect) -> None:
    logging.getLogger("scholarsource.access").setLevel(logging.WARNING)
    _requests(("POST", "/ok", {"json": {}}))
    assert access.lines == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_write_lines_writes_a_batch_at_once_in_the_chosen_format(fmt: str) -> None:
    stream = io.StringIO()
    logs.setup("info", fmt)
    handler = next(h for h in logging.getLogger("scholarsource").handlers
                   if getattr(h, "_scholarsource", False))
    saved, handler.stream = handler.stream, stream
    try:
        logs.set_role("pool")
        logs.write_lines(logging.getLogger("scholarsource.jobs"), [
            (1.5, logging.INFO, "job running", {"job_id": "a", "attempt": 1}),
            (2.5, logging.DEBUG, "skipped: below the level", {}),
            (3.5, logging.WARNING, "job dead", {"job_id": "b", "exit": None})])
    finally:
        handler.stream = saved
        logs.setup("info", "text")
        logs.set_role("main")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    if fmt == "json":
        first, second = (json.loads(line) for line in lines)
        assert (first["message"], first["job_id"], first["role"], second["level"]) == (
            "job running", "a", "pool", "WARNING")
    else:
        assert lines[0].endswith("[pool] [INFO] scholarsource.jobs: job running job_id=a "
                                 "attempt=1")
        assert lines[1].endswith("[WARNING] scholarsource.jobs: job dead job_id=b exit=null")


def test_write_lines_falls_back_to_records_without_our_handler(capture: Any) -> None:
    out = capture(logs.TextFormatter())
    logs.write_lines(logging.getLogger("scholarsource.test"),
                     [(1.0, logging.INFO, "job queued", {"job_id": "c"})])
    assert out.lines and out.lines[0].endswith("scholarsource.test: job queued job_id=c")
