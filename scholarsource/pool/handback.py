"""The attempts a stopping pool hands back to the queue, kept in a file that outlives it.

A stop re-queues the attempts still running when the grace is over, uncharged: the job did
nothing wrong. That write needs SQLite's write lock, which another process may hold past the
master's margin (a `prune --vacuum`, a migration, another tool's transaction): the master
then kills the pool, whose next start would take those attempts for the victims of a pool
death and charge each a crash. So from the moment it begins to stop, the pool lists in
`pool.handback` the attempts it still answers for (written then, and not only when the grace
is over: a pool waiting on the lock may never get that far), and removes the file once they
are all written back. The next pool hands them back uncharged (`Store.recover`), fenced by
token: an attempt that ended and was written since is no longer running under that token,
and changes nothing.

Each write replaces the whole file (a temporary file, then a rename): a reader finds the old
list or the new one. No fsync: the list must outlive the process, not the machine. A file it
cannot write or remove is logged once and leaves the old rule (a crash for each attempt), and
never stops the pool; a file that makes no sense is ignored with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from scholarsource.store.base import Store
from scholarsource.store.rules import SHUTDOWN

log = logging.getLogger("scholarsource.pool")

NAME = "pool.handback"
Pairs = list[tuple[str, int]]  # (job id, token) of each attempt


class Handback:
    """The data directory's list of attempts a stopping pool hands back."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._kept: Pairs | None = None  # what the file holds, as this pool last wrote it
        self._warned = False
        self._writing = False  # a keep() in progress (a signal handler may interrupt it)

    @classmethod
    def in_dir(cls, data_dir: str) -> Handback:
        """The data directory's file."""
        return cls(Path(data_dir) / NAME)

    def read(self) -> Pairs:
        """What an earlier pool left to hand back: nothing if there is no file, or one that
        is not a list of [job id, token] pairs (it said so)."""
        try:
            text = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read %s (%s): its jobs are charged as after a pool death",
                        NAME, exc)
            return []
        try:
            pairs = json.loads(text)
            if isinstance(pairs, list) and all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                    and type(p[1]) is int for p in pairs):
                return [(job_id, token) for job_id, token in pairs]
        except ValueError:  # not JSON, or not UTF-8: a truncated or foreign file
            pass
        log.warning("ignoring %s: not a list of [job id, token] pairs (%d bytes)", NAME,
                    len(text))
        return []

    def keep(self, pairs: Sequence[tuple[str, int]], reentrant: bool = False) -> None:
        """List `pairs` as what this pool hands back; none: remove the file. `reentrant`: a
        signal handler's call, which may come in the middle of another: it then leaves the
        file to that one."""
        wanted = list(pairs)
        if wanted == self._kept or (reentrant and self._writing):
            return
        self._writing = True
        try:
            if wanted:
                temp = self._path.with_name(NAME + ".tmp")
                temp.write_text(json.dumps(wanted))
                os.replace(temp, self._path)
            else:
                self._path.unlink(missing_ok=True)
            self._kept = wanted
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot keep %s (%s): a pool killed before it re-queues its "
                            "jobs leaves them charged a crash", NAME, exc)
        finally:
            self._writing = False

    async def requeue(self, store: Store, culprit: tuple[str, int] | None) -> int:
        """At a pool's start, before the recovery of what the last pool left running: put
        back uncharged, as its stop would have, the attempts it listed, but the culprit (a
        pool that dies taking in an attempt's data died of that data, stopping or not:
        store/rules.py), then remove the file. Returns how many were still running."""
        if pairs := [pair for pair in self.read() if pair != culprit]:
            requeued = await store.requeue(pairs, SHUTDOWN)
        else:
            requeued = 0
        self.keep([])
        return requeued
