"""The data directory's lock: one server per data directory, and no `migrate-to` while one
runs. An flock, so the kernel releases it when its holder dies, whatever killed it. A
server holds it exclusive; a one-off command that only needs to know that no server runs
(`keys create` migrating a first store) holds it shared, so that two such commands do not
take each other for a server."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from scholarsource.errors import DataDirInUse

LOCK_FILE = "scholarsource.lock"
# How long a starting server waits for one-off commands that hold the lock shared (a first
# key's migration) before it says the directory is in use.
_ONE_OFF_WAIT = 10.0


def lock_data_dir(data_dir: Path | str, *, shared: bool = False) -> int:
    """Take the lock on `data_dir` (created if missing), exclusive or `shared`, without
    waiting for a server; returns the descriptor that holds it (close it to let go). Raises
    DataDirInUse when a server holds it. An exclusive lock waits up to _ONE_OFF_WAIT seconds
    for one-off commands that hold it shared."""
    os.makedirs(data_dir, exist_ok=True)
    fd = os.open(os.path.join(data_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + _ONE_OFF_WAIT
    try:
        while not _took(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX):
            if shared or not _took(fd, fcntl.LOCK_SH) or time.monotonic() > deadline:
                raise DataDirInUse(f"data directory {data_dir} is in use by a running server")
            fcntl.flock(fd, fcntl.LOCK_UN)  # held shared: one-off commands, soon done
            time.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _took(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
