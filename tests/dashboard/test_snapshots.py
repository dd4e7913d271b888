"""The stats snapshot shared by every stream of a worker (api/snapshots.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scholarsource.api.snapshots import SharedSnapshots, tick_of, until_next_tick
from scholarsource.errors import StoreUnavailable


def test_forty_viewers_in_one_tick_share_one_computation() -> None:
    calls: list[str] = []

    async def compute(tenant: str) -> dict[str, Any]:
        calls.append(tenant)
        await asyncio.sleep(0.01)  # the queries, during which the other viewers ask too
        return {"tenant": tenant, "n": len(calls)}

    async def viewers() -> list[Any]:
        shared = SharedSnapshots(compute, interval=3600.0)  # one tick for the whole test
        return await asyncio.gather(*(shared.get("a") for _ in range(40)), shared.get("b"))

    snapshots = asyncio.run(viewers())
    assert sorted(calls) == ["a", "b"]
    assert {s.data["n"] for s in snapshots[:40]} == {snapshots[0].data["n"]}
    assert snapshots[0].event.startswith("event: stats\ndata: {")
    assert snapshots[-1].data["tenant"] == "b"  # tenants never share


def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    outcomes = [StoreUnavailable("locked"), {"ok": True}]

    async def compute(tenant: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def run() -> Any:
        shared = SharedSnapshots(compute, interval=3600.0)
        failed = await asyncio.gather(shared.get("a"), shared.get("a"), return_exceptions=True)
        assert all(isinstance(f, StoreUnavailable) for f in failed)
        return await shared.get("a")

    assert asyncio.run(run()).data == {"ok": True}


def test_a_viewer_that_leaves_does_not_cancel_the_others_snapshot() -> None:
    async def compute(tenant: str) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"done": True}

    async def run() -> Any:
        shared = SharedSnapshots(compute, interval=3600.0)
        leaving = asyncio.ensure_future(shared.get("a"))
        staying = asyncio.ensure_future(shared.get("a"))
        await asyncio.sleep(0.01)
        leaving.cancel()
        return await staying

    assert asyncio.run(run()).data == {"done": True}


@pytest.mark.parametrize("now", [100.0, 100.2, 100.999])
def test_streams_wake_at_the_start_of_the_next_tick(now: float) -> None:
    wait = until_next_tick(1.0, now)
    assert tick_of(now + wait, 1.0) == tick_of(now, 1.0) + 1
    assert 0 < wait <= 1.001
