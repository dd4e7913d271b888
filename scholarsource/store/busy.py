"""Waiting for SQLite's write lock in short steps instead of SQLite's own.

SQLite's busy handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25 ... up to 100 ms
between tries, while here the lock is held a few hundred microseconds at a time (a pool's
turn, an API worker's group commit). During `scholarsource bench e2e-noop` the pool slept
there 166 times in a 3 s run, 1.1-10 ms each: 275 ms in which no job started. So a
connection that waits this way has SQLite's busy timeout at 0, and a statement that found
the database locked is run again after a tenth of the time it has waited so far, at least
50 us and at most 20 ms, until the busy timeout has passed; then the last "database is
locked" error stands, as SQLite's would. A lock let go soon is taken soon; a long hold (a
VACUUM) costs a few hundred tries, not a core. An API worker's statement runs on aiosqlite's
thread: it waits on the event loop instead, whose timers count whole milliseconds, so its
shortest step is 1 ms (`bench submit`: p99 21-29 ms where SQLite's steps gave 51-111 ms).

Only a statement that SQLite refused for the lock is run again, and such a statement did
nothing: a BEGIN IMMEDIATE, or a statement outside a transaction. Inside a BEGIN IMMEDIATE
this connection holds the write lock, and WAL readers never wait for it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

SHORTEST_STEP = 50e-6
# An event loop's timers count whole milliseconds (epoll, libuv).
LOOP_STEP = 1e-3
LONGEST_STEP = 20e-3


def locked(exc: sqlite3.Error, in_transaction: bool) -> bool:
    """True if SQLite refused the statement because another connection holds the lock, and
    no transaction is left open: then it did nothing and may run again. (Any SQLITE_BUSY_*:
    a BEGIN IMMEDIATE that meets another writer's fresh commit gets BUSY_SNAPSHOT, which
    SQLite's own handler retried too. Inside a transaction a retry could not succeed.)"""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY and not in_transaction


def step(waited: float, shortest: float) -> float:
    """How long to sleep before the next try: a tenth of the time waited so far."""
    return min(max(waited / 10, shortest), LONGEST_STEP)


def fetch_waiting(conn: sqlite3.Connection, sql: str, params: Any,
                  timeout: float) -> list[Any]:
    """Run `sql` again, as it found the database locked, until it gets the lock or `timeout`
    seconds have passed. Blocks the calling thread meanwhile, as SQLite's handler does."""
    began = time.monotonic()
    while True:
        pause = step(time.monotonic() - began, SHORTEST_STEP)
        time.sleep(pause)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if (not locked(exc, conn.in_transaction)
                    or time.monotonic() + pause > began + timeout):
                raise


async def fetch_awaiting(tries: Callable[[], Awaitable[list[Any] | sqlite3.OperationalError]],
                         timeout: float) -> list[Any]:
    """As fetch_waiting, for a statement on another thread (aiosqlite) whose first try was
    refused for the lock: `tries` runs it again and returns its rows, or the refusal (an
    error `locked` accepts). The event loop serves other requests while it waits, in steps
    of at least LOOP_STEP; past `timeout` seconds the last refusal is raised."""
    began = time.monotonic()
    while True:
        pause = step(time.monotonic() - began, LOOP_STEP)
        await asyncio.sleep(pause)
        outcome = await tries()
        if not isinstance(outcome, sqlite3.OperationalError):
            return outcome
        if time.monotonic() + pause > began + timeout:
            raise outcome
