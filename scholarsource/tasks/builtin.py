"""Built-in tasks: a new install does real work at once, and the bench has workloads."""

from __future__ import annotations

import time
from typing import Any

import httpx

from scholarsource.tasks.context import Context
from scholarsource.tasks.registry import task

_FETCH_MAX_BYTES = 10 * 1024**2
_FETCH_HEADERS = ("content-type", "content-length", "last-modified", "etag", "server")


class TaskFailed(Exception):
    """Raised by the `fail` task, on purpose."""


@task("noop")
def noop(ctx: Context) -> None:
    """Do nothing: measures the queue's own overhead."""


@task("sleep")
def sleep(ctx: Context, seconds: float = 1.0) -> dict[str, float]:
    """Wait `seconds`, reporting progress and stopping early when cancelled."""
    seconds = float(seconds)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if ctx.cancel_requested:
            break
        time.sleep(min(left, 0.05))
        ctx.progress(1 - max(deadline - time.monotonic(), 0) / seconds if seconds else 1)
    return {"slept": round(seconds - max(deadline - time.monotonic(), 0), 3)}


@task("cpu")
def cpu(ctx: Context, seconds: float = 1.0) -> dict[str, int]:
    """Burn one core for `seconds` (CPU-bound work for the bench)."""
    deadline = time.monotonic() + float(seconds)
    loops = 0
    while time.monotonic() < deadline and not ctx.cancel_requested:
        sum(i * i for i in range(1000))
        loops += 1
    return {"loops": loops}


@task("echo")
def echo(ctx: Context, **params: Any) -> dict[str, Any]:
    """Return the params unchanged."""
    return params


@task("fetch")
def fetch(ctx: Context, url: str, timeout: float = 30.0,
          max_bytes: int = _FETCH_MAX_BYTES) -> dict[str, Any]:
    """GET `url` with httpx: status, a few headers and the size, bounded in time and bytes."""
    max_bytes = min(int(max_bytes), _FETCH_MAX_BYTES)
    size, truncated = 0, False
    with httpx.Client(timeout=float(timeout), follow_redirects=True) as client:
        with client.stream("GET", url) as response:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes or ctx.cancel_requested:
                    truncated = True
                    break
            return {"url": str(response.url), "status": response.status_code,
                    "headers": {k: response.headers[k] for k in _FETCH_HEADERS
                                if k in response.headers},
                    "bytes": min(size, max_bytes), "truncated": truncated}


@task("fail")
def fail(ctx: Context, message: str = "failed on purpose") -> None:
    """Raise with `message`: shows how failures are reported."""
    raise TaskFailed(message)
