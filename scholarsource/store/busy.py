"""Waiting for SQLite's write lock in short steps instead of SQLite's own.

SQLite's busy handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25 ... up to 100 ms
between tries, while here the lock is held a few hundred microseconds at a time (a pool's
turn, an API worker's group commit). During `scholarsource bench e2e-noop` the pool slept
there 166 times in a 3 s run, 1.1-10 ms each: 275 ms in which no job started. So a
connection that waits this way has SQLite's busy timeout at 0, and a statement that found
the database locked is run again after 50 us, doubling up to 1 ms, until the busy timeout has
passed; then the last "database is locked" error stands, as SQLite's would. An API worker's
statement runs on aiosqlite's thread: it waits on the event loop instead, whose timers count
whole milliseconds, in steps of 1 ms (`bench submit`: p99 21-29 ms where SQLite's growing
steps gave 51-111 ms).

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

FIRST_STEP = 50e-6
LONGEST_STEP = 1e-3
# An event loop's timers count whole milliseconds (epoll, libuv): its step is one.
LOOP_STEP = 1e-3


def locked(exc: sqlite3.Error, in_transaction: bool) -> bool:
    """True if SQLite refused the statement because another connection holds the lock, and
    no transaction is left open: then it did nothing and may run again. (Any SQLITE_BUSY_*:
    a BEGIN IMMEDIATE that meets another writer's fresh commit gets BUSY_SNAPSHOT, which
    SQLite's own handler retried too. Inside a transaction a retry could not succeed.)"""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY and not in_transaction


def fetch_waiting(conn: sqlite3.Connection, sql: str, params: Any,
                  timeout: float) -> list[Any]:
    """Run `sql` again, as it found the database locked, until it gets the lock or `timeout`
    seconds have passed. Blocks the calling thread meanwhile, as SQLite's handler does."""
    deadline = time.monotonic() + timeout
    step = FIRST_STEP
    while True:
        time.sleep(step)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not locked(exc, conn.in_transaction) or time.monotonic() + step > deadline:
                raise
        step = min(2 * step, LONGEST_STEP)


async def fetch_awaiting(fetch: Callable[[], Awaitable[list[Any]]],
                         in_transaction: Callable[[], bool], timeout: float) -> list[Any]:
    """As fetch_waiting, for a statement that runs on another thread (aiosqlite): the event
    loop serves other requests while it waits, in steps of LOOP_STEP."""
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.sleep(LOOP_STEP)
        try:
            return await fetch()
        except sqlite3.OperationalError as exc:
            if not locked(exc, in_transaction()) or time.monotonic() + LOOP_STEP > deadline:
                raise
