"""The data directory's lock: one server per data directory, and no `migrate-to` while one
runs. An flock, so the kernel releases it when its holder dies, whatever killed it. A
server holds it exclusive; a one-off command that only needs to know that no server runs
(`keys create` migrating a first store) holds it shared, so that two such commands do not
take each other for a server."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from scholarsource.errors import DataDirInUse

log = logging.getLogger("scholarsource.datalock")

LOCK_FILE = "scholarsource.lock"
_POLL = 0.05


def lock_data_dir(data_dir: Path | str, *, shared: bool = False) -> int:
    """Take the lock on `data_dir` (created if missing), exclusive or `shared`; returns the
    descriptor that holds it (close it to let go). Raises DataDirInUse at once when a server
    holds it. An exclusive lock waits for one-off commands that hold it shared, however
    long they take (migrating a big store can take minutes), and says so once."""
    os.makedirs(data_dir, exist_ok=True)
    fd = os.open(os.path.join(data_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT)
    said = False
    try:
        while not _took(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX):
            if shared or not _took(fd, fcntl.LOCK_SH):
                raise DataDirInUse(f"data directory {data_dir} is in use by a running server")
            fcntl.flock(fd, fcntl.LOCK_UN)  # held shared: one-off commands, soon done
            if not said:
                log.warning("data directory %s is held by a one-off command (keys create "
                            "migrating the store?); waiting for it to finish", data_dir)
                said = True
            time.sleep(_POLL)
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
