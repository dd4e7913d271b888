"""Connections to PostgreSQL: a psycopg pool per process, sized by its role, and the mapping of
"the database cannot answer now" errors to StoreUnavailable.

Pooled connections run in autocommit mode (a one-statement operation is one round trip)
with no server-side prepared statements (`prepare_threshold=None`), so a PgBouncer in
transaction pooling mode in front of the server works: no statement outlives its
transaction. LISTEN needs a session of its own, which `listen` opens directly.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from scholarsource.errors import StoreUnavailable
from scholarsource.store.postgres.text import clean

P = ParamSpec("P")
R = TypeVar("R")

# Connections per process: an API worker serves many requests at once; the pool's dispatcher
# is one loop, with a second connection so that a slow statement (a prune) does not hold up
# a claim; a CLI command runs one statement at a time.
POOL_SIZES = {"api": 8, "pool": 2, "cli": 1}
CONNECT_TIMEOUT = 10.0  # seconds to wait for a connection before saying unavailable

# SQLSTATE classes that mean "not now" rather than a bug: connection exceptions, invalid
# transaction state (a read-only standby), insufficient resources (disk full, too many
# connections), operator intervention (shutdown), system errors.
_UNAVAILABLE_CLASSES = frozenset({"08", "25", "53", "57", "58"})


def connection_options() -> dict[str, Any]:
    """What every pooled connection is opened with."""
    return {"autocommit": True, "prepare_threshold": None}


async def open_pool(url: str, role: str) -> AsyncConnectionPool:
    """A pool of connections to `url` sized for `role` ("api", "pool" or "cli"), opened."""
    if role not in POOL_SIZES:
        raise ValueError(f"unknown store role {role!r}; expected one of {sorted(POOL_SIZES)}")
    if role == "cli":
        # A one-off command (doctor, prune, backup) wants the reason at once (no such
        # database, a refused login), not the pool's silent retries for CONNECT_TIMEOUT.
        try:
            probe = await psycopg.AsyncConnection.connect(
                url, connect_timeout=int(CONNECT_TIMEOUT), **connection_options())
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        await probe.close()
    pool = AsyncConnectionPool(url, min_size=1, max_size=POOL_SIZES[role],
                               kwargs=connection_options(), timeout=CONNECT_TIMEOUT,
                               name=f"scholarsource-{role}", open=False)
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
    except PoolTimeout as exc:
        await pool.close()
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


def unavailable(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Map lost connections, a read-only server, a full disk and friends to StoreUnavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except PoolTimeout as exc:
            raise StoreUnavailable(str(exc)) from exc
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) or \
                    (exc.sqlstate or "")[:2] in _UNAVAILABLE_CLASSES:
                raise StoreUnavailable(str(exc)) from exc
            raise

    return wrapper


class Database:
    """Statements on a process's pool: each one on a connection of its own for its duration,
    every row fetched, so nothing holds a connection (or a transaction) between calls."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def fetchall(self, query: str, params: Any = None) -> list[Any]:
        """One statement (autocommit): its rows, or [] for one that returns none."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, clean(params))
            return await cursor.fetchall() if cursor.description is not None else []

    async def one(self, query: str, params: Any = None) -> Any:
        """The first row of one statement, or None."""
        rows = await self.fetchall(query, params)
        return rows[0] if rows else None

    async def atomically(self, statements: list[tuple[str, Any]]) -> list[list[Any]]:
        """Several statements as one transaction; returns each one's rows. Shielded, so a
        cancelled caller cannot hand a connection back mid-transaction."""

        async def run() -> list[list[Any]]:
            async with self.pool.connection() as conn, conn.transaction():
                results = []
                for query, params in statements:
                    cursor = await conn.execute(query, clean(params))
                    results.append(await cursor.fetchall()
                                   if cursor.description is not None else [])
                return results

        return await asyncio.shield(run())

    async def close(self) -> None:
        await self.pool.close()
