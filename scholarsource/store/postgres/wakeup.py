"""Wake-ups across boxes: NOTIFY on submit and cancel, LISTEN in each pool.

A pool's dispatcher watches a file descriptor (store.base.WakeSource): here the socket of a
LISTEN session of its own, opened directly (a transaction-mode PgBouncer keeps no session).
A notification makes it readable; `drain` collects what arrived without blocking. If the
session drops, the descriptor closes and the pool goes on by polling, as it always can.
"""

from __future__ import annotations

import logging

import psycopg

from scholarsource.errors import StoreUnavailable
from scholarsource.store.base import Wake

log = logging.getLogger("scholarsource.store")
CHANNEL = "scholarsource_wake"


class Listener:
    """A LISTEN session on CHANNEL, as a WakeSource."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self._conn = conn

    @classmethod
    def open(cls, url: str) -> Listener:
        """Connect to `url` and LISTEN."""
        try:
            conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot LISTEN for wake-ups: {exc}") from exc
        conn.execute(f"LISTEN {CHANNEL}")
        return cls(conn)

    def fileno(self) -> int:
        return self._conn.fileno()

    def drain(self) -> set[Wake]:
        kinds: set[Wake] = set()
        try:
            for note in self._conn.notifies(timeout=0.0):
                try:
                    kinds.add(Wake(note.payload))
                except ValueError:
                    kinds.add(Wake.SUBMITTED)  # a wake-up of a kind this version lacks
        except psycopg.Error as exc:
            log.warning("wake-ups stopped (%s): the pool goes on by polling", exc)
            self.close()
        return kinds

    def close(self) -> None:
        self._conn.close()
