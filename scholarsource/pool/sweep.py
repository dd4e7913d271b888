"""The artifacts sweep: delete the attempt directories that no job keeps.

What it deletes: a crash's leftovers (the pool died mid-attempt), and the files of a success
whose write answer was lost (the store may or may not hold them, so the pool leaves them to
the sweep: `kept_attempts` knows). A pool sweeps once when it starts, before any slot runs
(`run`), and then every `artifacts_sweep_interval` from the dispatcher's housekeeping
(`step`), so that such files never wait for a restart.

The directories are listed before the store is asked, so a directory made meanwhile is
never judged by an older answer. The periodic sweep is spread over the dispatcher's turns:
the listing on a thread, then one store call for SWEEP_CHUNK jobs per turn, the deletes on
a thread. Judged in one call, 10,000 job directories held the loop for the whole store
answer (bench/artifact_sweep.py); no turn waits for a big listing either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from scholarsource import artifacts
from scholarsource.errors import StoreUnavailable
from scholarsource.store.base import Store

log = logging.getLogger("scholarsource.pool")

SWEEP_CHUNK = 500  # job directories judged per store call (per turn, periodically)

_Listed = list[tuple[str, list[str]]]  # (job id, the names in its directory)


class Sweep:
    """The sweep of one artifacts directory; `step` from each turn of the dispatcher."""

    def __init__(self, root: Path, interval: float) -> None:
        self.root = root
        self.interval = interval
        self._next = time.monotonic() + interval  # the pool's start has just swept
        self._listing: asyncio.Future[dict[str, list[str]]] | None = None
        self._left: _Listed = []  # listed, not judged yet

    async def run(self, store: Store) -> int:
        """A whole sweep now (the pool's start); returns how many attempt directories it
        deleted, once they are gone."""
        listed = list((await asyncio.to_thread(artifacts.listing, self.root)).items())
        strays: list[Path] = []
        for start in range(0, len(listed), SWEEP_CHUNK):
            strays += await self._judge(store, listed[start:start + SWEEP_CHUNK])
        await asyncio.to_thread(_delete, strays)
        return len(strays)

    async def step(self, store: Store, now: float) -> None:
        """One turn's share of the periodic sweep (`now` is time.monotonic()): start the
        listing when due, or judge the next chunk of it once it is read. A store that
        refuses ends this sweep; the next comes an interval later."""
        if self._listing is None and not self._left:
            if now >= self._next:
                self._listing = asyncio.ensure_future(
                    asyncio.to_thread(artifacts.listing, self.root))
            return
        if self._listing is not None:
            if not self._listing.done():
                return
            try:
                self._left = list(self._listing.result().items())
            except OSError as exc:
                log.warning("cannot list the artifacts directory: %s", exc)
            self._listing = None
        chunk, self._left = self._left[:SWEEP_CHUNK], self._left[SWEEP_CHUNK:]
        try:
            strays = await self._judge(store, chunk) if chunk else []
        except StoreUnavailable as exc:
            log.warning("cannot sweep the artifacts directory now: %s", exc)
            strays, self._left = [], []
        if strays:
            asyncio.get_running_loop().run_in_executor(None, _delete, strays)
        if not self._left:
            self._next = now + self.interval

    async def _judge(self, store: Store, chunk: _Listed) -> list[Path]:
        """The attempt directories of `chunk` that no job keeps."""
        listed = dict(chunk)
        return artifacts.strays(self.root, listed, await store.kept_attempts(list(listed)))


def _delete(strays: list[Path]) -> None:
    """Delete these attempt directories (on a thread), and say so."""
    for directory in strays:
        artifacts.discard(directory)
    if strays:
        log.info("deleted %d attempt director%s of artifacts that no job keeps",
                 len(strays), "y" if len(strays) == 1 else "ies")
