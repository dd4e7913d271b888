"""The data directory's lock: one server per data directory, and no `migrate-to` while one
runs. An flock, so the kernel releases it when its holder dies, whatever killed it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from scholarsource.errors import DataDirInUse

LOCK_FILE = "scholarsource.lock"


def lock_data_dir(data_dir: Path | str) -> int:
    """Take the exclusive lock on `data_dir` (created if missing) without waiting; returns
    the descriptor that holds it (close it to let go). Raises DataDirInUse when a server
    holds it."""
    os.makedirs(data_dir, exist_ok=True)
    fd = os.open(os.path.join(data_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(f"data directory {data_dir} is in use by a running server") from None
    return fd
