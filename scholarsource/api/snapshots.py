"""One stats snapshot per view (a tenant, as an operator or not) per tick, shared by every
viewer an API worker serves.

Each `/api/stats/events` stream used to run its own queries every second: with 40 dashboards
open, 40 copies of the same queries queued on the worker's one database connection, each
snapshot arrived late, and viewers got about one update in four (issue 10 §8). Now streams
wake together on the same wall-clock tick; the first one to ask runs the queries and the
others await that same computation, so a worker's cost per tick no longer grows with the
number of viewers.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

View = TypeVar("View", bound=Hashable)


@dataclass(frozen=True)
class Snapshot:
    """A computed snapshot: its tick, its data and its SSE event, encoded once for all."""

    tick: int
    data: dict[str, Any]
    event: str


def tick_of(at: float, interval: float) -> int:
    """The tick (a whole number of intervals since the epoch) that `at` falls in."""
    return math.floor(at / interval)


def until_next_tick(interval: float, now: float | None = None) -> float:
    """Seconds to the start of the next tick; a millisecond late, so that a timer firing
    a little early still lands in the new tick."""
    now = time.time() if now is None else now
    return (tick_of(now, interval) + 1) * interval - now + 0.001


class SharedSnapshots(Generic[View]):
    """The latest snapshot of each view, recomputed at most once per tick."""

    def __init__(self, compute: Callable[[View], Awaitable[dict[str, Any]]],
                 interval: float) -> None:
        self._compute = compute
        self._interval = interval
        self._latest: dict[View, Snapshot] = {}
        self._pending: dict[View, asyncio.Future[Snapshot]] = {}

    async def get(self, tenant: View) -> Snapshot:
        """This tick's snapshot of `tenant` (a view): computed now by the first caller of the tick,
        awaited by the others. A failure (StoreUnavailable) reaches every waiter and is not
        kept: the next call tries again."""
        tick = tick_of(time.time(), self._interval)
        latest = self._latest.get(tenant)
        if latest is not None and latest.tick >= tick:
            return latest
        pending = self._pending.get(tenant)
        if pending is None:
            pending = self._pending[tenant] = asyncio.ensure_future(self._refresh(tenant, tick))
            pending.add_done_callback(lambda done: self._settled(tenant, done))
        # Shielded: a viewer that disconnects mid-computation must not cancel it for the rest.
        return await asyncio.shield(pending)

    def _settled(self, tenant: View, done: asyncio.Future[Snapshot]) -> None:
        self._pending.pop(tenant, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone meanwhile

    async def _refresh(self, tenant: View, tick: int) -> Snapshot:
        data = await self._compute(tenant)
        snapshot = Snapshot(tick, data, f"event: stats\ndata: {json.dumps(data)}\n\n")
        self._latest[tenant] = snapshot
        return snapshot
