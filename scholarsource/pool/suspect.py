"""Which job the pool is handling this instant, kept in a file that outlives the pool.

The pool guards against what a job carries (its params, its messages, its result), but a
death we did not foresee must not cost the innocent. While the dispatcher hands a job to its
slot or takes in what that slot sent, the file names the attempt; at any other time it is
blank. If the pool dies mid-way, the next pool reads the name and charges that attempt alone
with a crash (so a job that keeps killing the pool ends dead after max_crashes), and puts the
jobs that merely ran beside it back in the queue uncharged. A blank file after a death (a
kill from outside, the OOM killer) leaves the old rule: every running job counts a crash.

Cost: one pwrite of a few bytes into the page cache per mark, two per hand-over. No fsync:
the name must survive the process, not the machine. The file is only a hint: a write it
cannot make (a full disk, on a copy-on-write filesystem even for an overwrite; a read-only
directory) is logged once and leaves the old rule, and never stops the pool. Hence not a
shared mapping of the file, though it would save the system calls: a store into a mapped
page cannot fail, so a full disk, or the file truncated under it, would kill the pool with
SIGBUS instead (seen on btrfs: a crash loop).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from scholarsource.store.base import Claim

_WIDTH = 64  # a job id and a token, padded: every write covers the previous one
_BLANK = b" " * _WIDTH

log = logging.getLogger("scholarsource.pool")


class Suspect:
    """The file in the data directory that names the attempt being handled."""

    def __init__(self, path: Path) -> None:
        self._fd: int | None = None
        self._write(lambda: setattr(self, "_fd", os.open(path, os.O_RDWR | os.O_CREAT, 0o600)))

    @classmethod
    def in_dir(cls, data_dir: str) -> Suspect:
        """The data directory's file."""
        return cls(Path(data_dir) / "pool.suspect")

    def take(self) -> tuple[str, int] | None:
        """(job id, token) the last pool was handling when it died, if any; clears it."""
        if self._fd is None:
            return None
        try:
            words = os.pread(self._fd, _WIDTH, 0).split()
        except OSError:
            return None
        self.clear()
        if len(words) == 2 and words[1].isdigit():
            return words[0].decode("ascii", "replace"), int(words[1])
        return None

    def mark(self, claim: Claim | None) -> None:
        """The pool starts handling `claim`'s data (nothing for None)."""
        if claim is not None and self._fd is not None:
            text = f"{claim.id} {claim.token}".encode().ljust(_WIDTH)
            fd = self._fd
            self._write(lambda: os.pwrite(fd, text, 0))

    def clear(self) -> None:
        """The pool handles no job's data now."""
        if self._fd is not None:
            fd = self._fd
            self._write(lambda: os.pwrite(fd, _BLANK, 0))

    def close(self) -> None:
        """Release the file (it stays, blank, for the next pool)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, write: Callable[[], object]) -> None:
        try:
            write()
        except OSError as exc:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None  # no more marks: a stale name would blame the wrong job
            log.warning("cannot keep %s (%s): a pool death charges every running job",
                        "pool.suspect", exc)
