"""Built-in tasks: a new install does real work at once, and the bench has workloads.

Every number a client may pass is bounded in the signature (Annotated with Bounds): the API
refuses a value out of range at submit, so no client can hold a slot for years or ask for
more memory than a test box has.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

from scholarsource.tasks.context import Context
from scholarsource.tasks.fetch import get as guarded_get
from scholarsource.tasks.params import Bounds
from scholarsource.tasks.registry import task

_FETCH_MAX_BYTES = 10 * 1024**2
_DAY = 86400.0
Seconds = Annotated[float, Bounds(0, _DAY)]
# About a day of work at ~35 us a loop on an idle core.
_MAX_LOOPS = 2_500_000_000
# The memory task is a probe for admission and caps, not a way to fill the box.
_MAX_MB = 1024


class TaskFailed(Exception):
    """Raised by the `fail` task, on purpose."""


@task("noop")
def noop(ctx: Context) -> None:
    """Do nothing: measures the queue's own overhead."""


@task("sleep")
def sleep(ctx: Context, seconds: Seconds = 1.0) -> dict[str, float]:
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
def cpu(ctx: Context, seconds: Seconds = 1.0,
        loops: Annotated[int | None, Bounds(0, _MAX_LOOPS)] = None) -> dict[str, int]:
    """Burn one core for `seconds`, or for a fixed amount of work, `loops` (each about 35 us
    on an idle core): fixed work takes longer on a busy box instead of doing less."""
    deadline = time.monotonic() + float(seconds)
    done = 0
    while (done < int(loops) if loops is not None else time.monotonic() < deadline) \
            and not ctx.cancel_requested:
        sum(i * i for i in range(1000))
        done += 1
    return {"loops": done}


@task("echo")
def echo(ctx: Context, **params: Any) -> dict[str, Any]:
    """Return the params unchanged."""
    return params


@task("fetch")
def fetch(ctx: Context, url: str, timeout: Annotated[float, Bounds(0, 300)] = 30.0,
          max_bytes: Annotated[int, Bounds(0, _FETCH_MAX_BYTES)] = _FETCH_MAX_BYTES
          ) -> dict[str, Any]:
    """GET `url` with httpx: status, a few headers and the size, bounded in time and bytes;
    public addresses only unless fetch_allow_private is set (see tasks/fetch.py)."""
    return guarded_get(url, float(timeout), min(int(max_bytes), _FETCH_MAX_BYTES),
                       lambda: ctx.cancel_requested)


@task("fail")
def fail(ctx: Context, message: str = "failed on purpose") -> None:
    """Raise with `message`: shows how failures are reported."""
    raise TaskFailed(message)


@task("memory")
def memory(ctx: Context, mb: Annotated[float, Bounds(0, _MAX_MB)] = 100,
           seconds: Seconds = 1.0) -> dict[str, float]:
    """Allocate `mb` megabytes (touching every page, so they count in RSS) and hold them for
    `seconds`: admission, memory caps and the bench."""
    block = bytearray(int(float(mb) * 1024**2))
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline and not ctx.cancel_requested:
        time.sleep(0.02)
    return {"mb": float(mb)}


@task("crash")
def crash(ctx: Context, code: Annotated[int, Bounds(0, 255)] = 1) -> None:
    """End this job's process at once with exit `code`, as a segfault or the OOM killer
    would: no exception, no cleanup."""
    os._exit(int(code))
