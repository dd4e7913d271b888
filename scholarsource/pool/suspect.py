"""Which job the pool is handling this instant, kept in a file that outlives the pool.

The pool guards against what a job carries (its params, its messages, its result), but a
death we did not foresee must not cost the innocent. While the dispatcher hands a job to its
slot or takes in what that slot sent, the file names the attempt; at any other time it is
blank. If the pool dies mid-way, the next pool reads the name and charges that attempt alone
with a crash (so a job that keeps killing the pool ends dead after max_crashes), and puts the
jobs that merely ran beside it back in the queue uncharged. A blank file after a death (a
kill from outside, the OOM killer) leaves the old rule: every running job counts a crash.

Cost: a store of 64 bytes into a shared mapping of the file, no system call (it was a
pwrite each, four a job). A shared mapping's page is the page cache's, so what the pool wrote
is in the file for the next pool however this one dies. No fsync: the name must survive the
process, not the machine. The file's 64 bytes are written once at open, so the mapped page
has its block on disk (a hole would need one at the first store, and a full disk would then
kill the pool with SIGBUS). The file is only a hint: one it cannot open, write or map (a
read-only directory, a full disk before it ever held its 64 bytes) is logged once and leaves
the old rule, and never stops the pool.
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path

from scholarsource.store.base import Claim

_WIDTH = 64  # a job id and a token, padded: every write covers the previous one
_BLANK = b" " * _WIDTH

log = logging.getLogger("scholarsource.pool")


class Suspect:
    """The file in the data directory that names the attempt being handled."""

    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._give_up(exc)
            return
        try:
            # Pad, never blank: the file may name what the last pool was handling (take()).
            kept = os.pread(fd, _WIDTH, 0)
            if len(kept) < _WIDTH:
                os.pwrite(fd, kept.ljust(_WIDTH), 0)
            self._map = mmap.mmap(fd, _WIDTH)
        except (OSError, ValueError) as exc:
            self._give_up(exc)
        finally:
            os.close(fd)  # the mapping keeps the file

    @classmethod
    def in_dir(cls, data_dir: str) -> Suspect:
        """The data directory's file."""
        return cls(Path(data_dir) / "pool.suspect")

    def take(self) -> tuple[str, int] | None:
        """(job id, token) the last pool was handling when it died, if any; clears it."""
        if self._map is None:
            return None
        words = self._map[:_WIDTH].split()
        self.clear()
        if len(words) == 2 and words[1].isdigit():
            return words[0].decode("ascii", "replace"), int(words[1])
        return None

    def mark(self, claim: Claim | None) -> None:
        """The pool starts handling `claim`'s data (nothing for None)."""
        if claim is not None and self._map is not None:
            self._map[:_WIDTH] = f"{claim.id} {claim.token}".encode().ljust(_WIDTH)[:_WIDTH]

    def clear(self) -> None:
        """The pool handles no job's data now."""
        if self._map is not None:
            self._map[:_WIDTH] = _BLANK

    def close(self) -> None:
        """Release the file (it stays, blank, for the next pool)."""
        if self._map is not None:
            self._map.close()
            self._map = None

    def _give_up(self, exc: Exception) -> None:
        log.warning("cannot keep %s (%s): a pool death charges every running job",
                    "pool.suspect", exc)
