"""Tasks for the tests, importable by slot processes (tests/ is put on PYTHONPATH)."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time

from scholarsource import Context, Retry, task


@task("record")
def record(ctx: Context, path: str, seconds: float = 0.0) -> dict[str, str]:
    """Append one line per execution to `path` (O_APPEND: atomic for short lines)."""
    if seconds:
        time.sleep(float(seconds))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return {"job_id": ctx.job_id}


@task("report")
def report(ctx: Context, steps: int = 3) -> int:
    """Report progress and log lines, then return the number of steps."""
    for i in range(steps):
        ctx.log(f"step {i + 1}")
        ctx.progress((i + 1) / steps, f"step {i + 1} of {steps}")
        time.sleep(0.06)
    return steps


@task("span")
def span(ctx: Context, path: str, seconds: float = 0.5) -> None:
    """Write when this execution started and ended (to measure how many ran at once)."""
    with open(path, "a") as fh:
        fh.write(f"start {time.time()!r} {ctx.job_id}\n")
    time.sleep(float(seconds))
    with open(path, "a") as fh:
        fh.write(f"end {time.time()!r} {ctx.job_id}\n")


@task("hold")
def hold(ctx: Context, pidfile: str, seconds: float = 30.0) -> None:
    """Write this slot's pid to `pidfile`, then sleep (a target for kill tests)."""
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    time.sleep(float(seconds))


@task("big")
def big(ctx: Context, size: int) -> str:
    """Return a string of `size` characters."""
    return "x" * int(size)


@task("exits")
def exits(ctx: Context, code: int = 3) -> None:
    """Call sys.exit(), as some library code does."""
    raise SystemExit(int(code))


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@task("mark")
def mark(ctx: Context, path: str, seconds: float = 0.0) -> int:
    """Append "job attempt" to `path` as soon as the body starts, then work `seconds`: the
    file counts every execution, even one killed midway."""
    _append(path, f"{ctx.job_id} {ctx.attempt}")
    time.sleep(float(seconds))
    return ctx.attempt


@task("poison")
def poison(ctx: Context, path: str) -> None:
    """Write the wall-clock time, then end the process abruptly: a job that always crashes."""
    _append(path, repr(time.time()))
    os._exit(1)


@task("stubborn")
def stubborn(ctx: Context, seconds: float = 30.0) -> None:
    """Ignore SIGTERM and keep working: only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(seconds))


@task("flaky", max_attempts=4, backoff_base=0.05, backoff_max=0.1, memory="64MB",
      memory_limit="1GB")
def flaky(ctx: Context, succeed_on: int = 3, after: float = 0.3) -> int:
    """Ask for a retry `after` seconds until attempt `succeed_on`; returns the attempt."""
    if ctx.attempt < int(succeed_on):
        raise Retry(f"not yet ({ctx.attempt})", after=float(after))
    return ctx.attempt


_LEAK: list[bytearray] = []


@task("leaky")
def leaky(ctx: Context, mb: int = 0) -> int:
    """Keep `mb` megabytes for the life of the slot process (a leak); returns its pid."""
    if mb:
        block = bytearray(int(mb) * 1024**2)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        _LEAK.append(block)
    return os.getpid()


@task("chatty")
def chatty(ctx: Context) -> None:
    """Log through the task's own logger, as task code does."""
    logging.getLogger("sample_tasks").info("hello from job %s", ctx.job_id)


@task("patient", timeout=7200)
def patient(ctx: Context) -> None:
    """Declares a two-hour timeout (a server whose max_timeout is lower refuses to boot)."""


class _EndsWhoeverUnpicklesIt:
    """Unpickled, it ends the process at once: a stand-in for a message that crashes the
    pool in a way nobody foresaw."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return os._exit, (70,)


@task("pool_killer")
def pool_killer(ctx: Context, path: str, after: float = 0.3) -> None:
    """Record this execution, then send the pool a note whose unpickling ends the pool
    process (through the slot's real pipe, past ctx's own checks)."""
    _append(path, f"{ctx.job_id} {ctx.attempt}")
    time.sleep(float(after))
    ctx._send("log", {"message": _EndsWhoeverUnpicklesIt()})
    time.sleep(30)


_STRANGE: dict[str, object] = {
    "nan": float("nan"), "infinity": [1, float("inf")], "surrogate": {"text": "a\ud800b"},
    "set": {1, 2}, "deep": None}


@task("strange")
def strange(ctx: Context, kind: str) -> object:
    """Return a value that has no strict JSON form (`deep`: nested 100,000 lists)."""
    if kind == "deep":
        value: list[object] = []
        for _ in range(100_000):
            value = [value]
        return value
    return _STRANGE[kind]


@task("odd_report")
def odd_report(ctx: Context, kind: str, size: int = 4 * 1024**2) -> str:
    """Report something odd: through ctx (`nan_progress`, `surrogates`), or straight down
    the pipe past ctx's checks (`nan_note`, `huge_note` of `size` characters), or a plain
    tuple that claims the attempt succeeded (`forged_end`, the pipe's old message format)."""
    if kind == "nan_progress":
        ctx.progress(float("nan"))
    elif kind == "surrogates":
        ctx.log("log \udc80 line")
        ctx.progress(1.0, "progress \ud800 message")
    elif kind == "nan_note":
        ctx._send("progress", {"fraction": float("nan"), "message": None})
    elif kind == "huge_note":
        ctx._send("log", {"message": "x" * int(size)})
    elif kind == "forged_end":
        from scholarsource.pool import slots
        assert slots._conn is not None
        slots._conn.send(("done", ctx._token, "ok", '"forged"', None, None, 0.0))
    time.sleep(0.2)  # notes reach the pool before the end of the attempt
    return kind


@task("partial")
def partial(ctx: Context, seconds: float = 30.0) -> dict[str, bool]:
    """Work until cancelled, then return what was done so far (the README's example)."""
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        if ctx.cancel_requested:
            return {"partial": True}
        time.sleep(0.02)
    return {"partial": False}


@task("course", cache_ttl=3600)
def course(ctx: Context, path: str, course: str = "") -> dict[str, str]:
    """What the frontend submits (its form is the params): cached for an hour; appends the
    job id to `path` on each run."""
    _append(path, ctx.job_id)
    return {"course": course}


@task("stamp")
def stamp(ctx: Context, path: str, seconds: float = 0.0) -> int:
    """Like `mark`, and names the server that ran it: "job attempt box", where box is the
    slot's TEST_BOX environment variable (tests with several servers set one each)."""
    _append(path, f"{ctx.job_id} {ctx.attempt} {os.environ.get('TEST_BOX', '-')}")
    time.sleep(float(seconds))
    return ctx.attempt


@task("narrate")
def narrate(ctx: Context, gate: str = "", lines: int = 5, pause: float = 0.0,
            width: int = 0) -> int:
    """Once the file `gate` exists (if one is named; 30 s at most), log `lines` lines, one
    every `pause` seconds, each padded to `width` characters: events that arrive while a
    test's streams are open."""
    deadline = time.monotonic() + 30
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(lines):
        ctx.log(f"line {i} ".ljust(width, "x"))
        if pause:
            time.sleep(pause)
    return lines


@task("artifact_big")
def artifact_big(ctx: Context, name: str, mib: int) -> str:
    """Write `mib` MiB of random bytes as one artifact (1 MiB per write: fast, flat memory);
    returns its sha256, computed as it was written."""
    digest = hashlib.sha256()
    with open(ctx.artifact(name), "wb") as fh:
        for _ in range(int(mib)):
            chunk = os.urandom(1024**2)
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()


@task("artifact_files")
def artifact_files(ctx: Context, names: list[str], odd: str = "", fail: bool = False,
                   hold: str = "") -> list[str]:
    """Write each name's own text as an artifact; with `odd`, leave a "symlink" (to
    /etc/passwd), a "directory" or a "fifo" beside them; `fail` raises once they are
    written; `hold` names a file to create once written, then sleeps (a target for kills)."""
    for name in names:
        ctx.artifact(name).write_text(name)
    if odd:
        target = ctx.artifact("odd")
        if odd == "symlink":
            os.symlink("/etc/passwd", target)
        elif odd == "directory":
            target.mkdir()
        else:
            os.mkfifo(target)
    if hold:
        with open(hold, "w"):
            pass
        time.sleep(60)
    if fail:
        raise RuntimeError("failed after writing its files")
    return names


@task("artifact_keeps_writing")
def artifact_keeps_writing(ctx: Context, name: str, first: str, more: str) -> None:
    """Write `first` as an artifact and return, leaving a thread that holds the file open and
    appends `more` once the pool has settled it (made it read-only): a task that keeps
    writing after its success."""
    path = ctx.artifact(name)
    file = open(path, "w")  # the thread closes it
    file.write(first)
    file.flush()

    def later() -> None:
        deadline = time.monotonic() + 30
        while os.stat(path).st_mode & 0o222 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # the settle hashes after its chmod: let it finish first
        file.write(more)
        file.close()

    threading.Thread(target=later, daemon=True).start()


@task("read_parent_artifacts")
def read_parent_artifacts(ctx: Context) -> dict[str, dict[str, str]]:
    """Each parent's artifacts as ctx.parent_artifacts gives them, read: {id: {name: text}}."""
    return {parent: {name: path.read_text() for name, path in files.items()}
            for parent, files in ctx.parent_artifacts.items()}


@task("add")
def add(ctx: Context, digit: int = 1, seconds: float = 0.0) -> int:
    """Append `digit` to the parents' results (their sum: one parent in a chain), so that a
    chain's last result spells the order it ran in (1, 12, 123); None results count 0.
    Sleeps `seconds` first (a step to catch running)."""
    time.sleep(float(seconds))
    return sum(value or 0 for value in ctx.parent_results.values()) * 10 + digit


@task("fan_out")
def fan_out(ctx: Context, n: int = 50, child: str = "piece", pause: float = 0.0,
            fail_first: bool = False, gather: str = "gather", between: float = 0.0,
            hold: float = 0.0) -> object:
    """Submit `n` children of task `child` (each `piece` sleeps `pause`; `between` seconds
    between two submits), then end and let `gather` run once they have all ended. With
    `fail_first`, the first attempt raises after its submits, so the second submits them
    again; with `hold`, it waits that long (or until cancelled) before it returns."""
    ids = []
    for i in range(n):
        ids.append(ctx.submit(child, {"i": i, "pause": pause}))
        time.sleep(between)
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not ctx.cancel_requested:
        time.sleep(0.01)
    if fail_first and ctx.attempt == 1:
        raise RuntimeError("the first attempt fails after its submits")
    return ctx.continue_with(gather, {"expected": n}, after=ids)


@task("piece")
def piece(ctx: Context, i: int = 0, pause: float = 0.0) -> int:
    """One child of a fan-out: wait `pause` seconds (stopping early once cancelled), then
    return its index."""
    deadline = time.monotonic() + pause
    while time.monotonic() < deadline and not ctx.cancel_requested:
        time.sleep(0.01)
    return i


@task("gather")
def gather(ctx: Context, expected: int = 0) -> dict[str, object]:
    """A fan-out's continuation: how many results it received and their sum."""
    return {"count": len(ctx.parent_results), "expected": expected,
            "sum": sum(ctx.parent_results.values())}
