"""The claim policy as units: which queues a claim may take from, how many at once, and
its rounds of claims against a real store."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scholarsource.config import Config
from scholarsource.errors import StoreUnavailable
from scholarsource.limits import QueueLimits, TenantLimits
from scholarsource.pool.admission import Admission
from scholarsource.pool.memory import Expectations
from scholarsource.pool.policy import Policy, gate
from scholarsource.pool.slots import Slots, SlotSettings
from scholarsource.quotas import TenantOverride
from scholarsource.store.base import OPEN, Claim, Gate, Store, TaskDefaults
from scholarsource.store.sqlite import SqliteStore
from tests.store.test_sqlite import job, run

CAPPED = {"extraction": QueueLimits(max_running=1)}
RESERVED = {"urgent": QueueLimits(reserved=1)}


def test_no_queue_table_lets_every_queue_take_every_free_slot() -> None:
    assert gate({}, Counter(), 4) == (Gate(), 4)


def test_a_capped_queue_at_its_cap_is_skipped_and_the_others_go_on() -> None:
    assert gate(CAPPED, Counter(extraction=1), 3) == (Gate(skip=("extraction",)), 3)


def test_a_batch_never_takes_more_than_a_queue_has_room_for() -> None:
    # A claim counts its own rows only once: with room for one more extraction job, one
    # job per claim, and the next round recounts.
    assert gate(CAPPED, Counter(), 4) == (Gate(), 1)


def test_an_unfilled_reservation_holds_its_slot_back_from_the_other_queues() -> None:
    # 2 free, 1 of them reserved for urgent: the others share 1.
    assert gate(RESERVED, Counter(default=2), 2) == (Gate(), 1)
    # 1 free, reserved for urgent: only urgent may take it.
    assert gate(RESERVED, Counter(default=3), 1) == (Gate(only=("urgent",)), 1)


def test_a_filled_reservation_holds_nothing_back() -> None:
    assert gate(RESERVED, Counter(urgent=1, default=2), 1) == (Gate(), 1)


def test_reservations_that_hold_every_free_slot_with_none_left_start_nothing() -> None:
    queues = {"a": QueueLimits(reserved=1, max_running=1), "b": QueueLimits(reserved=1)}
    # a is full (at its cap), b's one unfilled reservation holds the one free slot.
    assert gate(queues, Counter(a=1, other=1), 1) == (Gate(skip=("a",), only=("b",)), 1)
    capped_b = {"b": QueueLimits(reserved=2, max_running=2)}
    assert gate(capped_b, Counter(b=2, other=1), 1) == (Gate(skip=("b",)), 1)
    both_capped = {"a": QueueLimits(reserved=1, max_running=1),
                   "b": QueueLimits(reserved=1, max_running=1)}
    assert gate(both_capped, Counter(other=2), 2)[1] == 1
    assert gate(both_capped, Counter(a=1, other=2), 1) == (Gate(skip=("a",), only=("b",)), 1)


class _Roomy(Admission):
    """Memory to spare: these tests are about queues, not memory."""

    def __init__(self) -> None:
        super().__init__(0, Expectations(1), Slots(0, SlotSettings.of(Config())))

    async def admit(self, store: Store, n: int, gate: Gate = OPEN,
                    claimed: int = 0) -> list[int] | None:
        return None


class _Tight(Admission):
    """Room for two and a half jobs of 100 bytes each, whatever runs."""

    def __init__(self) -> None:
        super().__init__(0, Expectations(100), Slots(0, SlotSettings.of(Config())))

    def budget(self) -> int:
        return 250


def test_a_claim_fills_the_free_slots_in_rounds_within_every_rule(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        for _ in range(3):
            await store.submit(job("x", priority=5, queue="extraction"))
        for _ in range(3):
            await store.submit(job("y", queue="other"))
        policy = Policy(CAPPED, _Roomy(), rate_limited=False)
        claims = await policy.claim(store, "pool", 3, 30, running=[])
        assert sorted(c.queue for c in claims) == ["extraction", "other", "other"]
        assert policy.retry_at is None
        # Its running job still counts: no second extraction job while it runs.
        more = await policy.claim(store, "pool", 3, 30, running=claims)
        assert [c.queue for c in more] == ["other"]
    run(tmp_path / "q.db", body, inline=True)


def test_a_throttled_claim_says_when_to_look_again(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.publish_tasks([TaskDefaults("x", "default", None, None, rate_limit=1,
                                                rate_window=60.0)])
        for _ in range(2):
            await store.submit(job("x"))
        policy = Policy({}, _Roomy(), rate_limited=True)
        before = time.time()
        assert len(await policy.claim(store, "pool", 2, 30, running=[])) == 1
        assert policy.retry_at is not None and before + 60 <= policy.retry_at < before + 61
    run(tmp_path / "q.db", body, inline=True)


def test_the_rounds_of_one_claim_share_one_memory_budget(tmp_path: Path) -> None:
    # The capped queue makes the claim go in rounds. Jobs claimed in an earlier round hold
    # no slot yet, so neither free memory nor the busy slots count them: the policy must.
    # Before it did, each round saw the whole budget again and all four jobs started.
    async def body(store: SqliteStore) -> None:
        await store.submit(job("x", priority=5, queue="extraction"))
        for _ in range(3):
            await store.submit(job("y", queue="other"))
        policy = Policy(CAPPED, _Tight(), rate_limited=False)
        claims = await policy.claim(store, "pool", 4, 30, running=[])
        assert sorted(c.queue for c in claims) == ["extraction", "other"]
    run(tmp_path / "q.db", body, inline=True)


def test_the_configured_weights_share_the_free_slots_among_tenants(tmp_path: Path) -> None:
    # Eight free slots, two tenants with long backlogs: the rounds (one tenant's turn each)
    # fill them in the proportion of the [tenants.NAME] weights, memory admission included.
    async def body(store: SqliteStore) -> None:
        for tenant in ("big", "small"):
            await store.submit_many([job(tenant=tenant)] * 20)
        tenants = {"big": TenantLimits(weight=3), "small": TenantLimits()}
        policy = Policy({}, _Tight(), rate_limited=False, tenants=tenants)
        assert policy.weights == (("big", 3),)  # weight 1 is the default: not sent
        claims = await policy.claim(store, "pool", 2, 30, running=[])
        assert len(claims) == 2  # _Tight: room for two
        roomy = Policy({}, _Roomy(), rate_limited=False, tenants=tenants)
        claims += await roomy.claim(store, "pool", 6, 30, running=claims)
        assert Counter(c.tenant for c in claims) == {"big": 6, "small": 2}
    run(tmp_path / "q.db", body, inline=True)


def test_a_weight_stored_with_the_tenants_command_wins_over_the_configs(tmp_path: Path) -> None:
    # `scholarsource tenants set small --weight 3` writes an override; the pool reads the
    # limits in force on each heartbeat and shares the slots by them.
    async def body(store: SqliteStore) -> None:
        config = {"big": TenantLimits(weight=2), "small": TenantLimits()}
        policy = Policy({}, _Roomy(), rate_limited=False, tenants=config)
        assert policy.weights == (("big", 2),)
        await store.set_tenant_limits("small", TenantOverride(weight=3))
        policy.use_tenants(await store.tenant_limits(config))
        assert policy.weights == (("big", 2), ("small", 3))
        for tenant in ("big", "small"):
            await store.submit_many([job(tenant=tenant)] * 20)
        claims = await policy.claim(store, "pool", 5, 30, running=[])
        assert Counter(c.tenant for c in claims) == {"big": 2, "small": 3}
    run(tmp_path / "q.db", body, inline=True)


def test_jobs_claimed_before_the_store_fails_are_returned_to_start(tmp_path: Path) -> None:
    # A claim in rounds whose second round meets an unavailable store: the first round's
    # jobs are claimed in the store (running, this owner's), so they must reach slots, not
    # sit running with no slot (the pool renews its leases: they would never be recovered).
    async def body(store: SqliteStore) -> None:
        for queue in ("extraction", "extraction", "other", "other"):
            await store.submit(job("x", queue=queue))
        real, calls = store.claim, []

        async def flaky(*args: Any, **kwargs: Any) -> list[Claim]:
            calls.append(1)
            if len(calls) > 1:
                raise StoreUnavailable("blip")
            return await real(*args, **kwargs)

        store.claim = flaky  # type: ignore[method-assign]
        policy = Policy(CAPPED, _Roomy(), rate_limited=False)
        claims = await policy.claim(store, "pool", 3, 30, running=[])
        assert len(claims) >= 1 and len(calls) == 2
        assert isinstance(policy.failed, StoreUnavailable)
        assert (await store.counts())["running"] == len(claims)
        # Nothing claimed yet when it fails: the error itself.
        calls.clear()
        calls.append(1)
        with pytest.raises(StoreUnavailable):
            await policy.claim(store, "pool", 1, 30, running=claims)
    run(tmp_path / "q.db", body, inline=True)
