"""Where the pool's CPU per job goes: bench/drain.py with each part of it accounted.

    python bench/drain_parts.py [--jobs 5000] [--slots 2]

The same drain as bench/drain.py, with the CPU (thread time) of each SQL statement the pool
runs (per call and per job) and of the dispatcher's parts (per job; the parts nest: the
turn's write holds the finish, the claim and the starts). The accounting costs a few µs per
call, so read the shares, and take the totals from bench/drain.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drain import measure  # bench/drain.py, beside this script

from scholarsource.pool import dispatcher, journal, policy
from scholarsource.store import sqlite

_SQL: collections.defaultdict[str, float] = collections.defaultdict(float)  # CPU seconds
_SQL_CALLS: collections.Counter[str] = collections.Counter()
_PARTS: collections.defaultdict[str, float] = collections.defaultdict(float)
_PART_CALLS: collections.Counter[str] = collections.Counter()

# (owner, method, label): the parts accounted, each around its own calls.
_ASYNC_PARTS = [(dispatcher.Dispatcher, "_write", "turn: write results + claim + start"),
                (dispatcher.Dispatcher, "_housekeeping", "turn: housekeeping"),
                (sqlite.SqliteStore, "finish", "store.finish"),
                (policy.Policy, "claim", "policy.claim (store.claim inside)"),
                (sqlite.SqliteStore, "claim", "store.claim")]
_SYNC_PARTS = [(dispatcher.Dispatcher, "_start", "start an attempt (pipe, journal)"),
               (dispatcher.Dispatcher, "_read", "read a slot's message"),
               (journal.Journal, "started", "journal.started"),
               (journal.Journal, "ended", "journal.ended")]


def _statement(sql: str) -> str:
    return " ".join(sql.split())[:60]


def _account() -> None:
    """Wrap the inline driver's statements and the parts with CPU counters."""
    run_statement = sqlite._InlineDriver.fetchall

    async def fetchall(self: Any, sql: str, params: Any = ()) -> list[Any]:
        began = time.thread_time()
        try:
            return await run_statement(self, sql, params)
        finally:
            _SQL[_statement(sql)] += time.thread_time() - began
            _SQL_CALLS[_statement(sql)] += 1

    sqlite._InlineDriver.fetchall = fetchall  # type: ignore[method-assign]
    for owner, name, label in _ASYNC_PARTS:
        setattr(owner, name, _timed_async(getattr(owner, name), label))
    for owner, name, label in _SYNC_PARTS:
        setattr(owner, name, _timed(getattr(owner, name), label))


def _timed_async(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return await fn(*args, **kwargs)
        finally:
            _PARTS[label] += time.thread_time() - began
            _PART_CALLS[label] += 1
    return wrapper


def _timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _PARTS[label] += time.thread_time() - began
            _PART_CALLS[label] += 1
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    _account()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(args.jobs, args.slots, Path(tmp)))
    jobs = args.jobs
    print(f"{result['jobs_per_s']:,.0f} jobs/s; CPU per job: pool "
          f"{result['pool_cpu_us_per_job']:.0f} us, slots {result['slots_cpu_us_per_job']:.0f} "
          f"us (with the accounting's own cost)")
    print("SQL statements (the fill's INSERTs included):")
    for sql, cpu in sorted(_SQL.items(), key=lambda item: -item[1])[:8]:
        print(f"  {cpu / jobs * 1e6:6.1f} us/job  {cpu / _SQL_CALLS[sql] * 1e6:7.1f} us/call  "
              f"{_SQL_CALLS[sql] / jobs:5.2f} calls/job  {sql}")
    print("Parts:")
    for part, cpu in sorted(_PARTS.items(), key=lambda item: -item[1]):
        print(f"  {cpu / jobs * 1e6:6.1f} us/job  {_PART_CALLS[part] / jobs:5.2f} calls/job  "
              f"{part}")


if __name__ == "__main__":
    main()
