"""Fair slots among tenants, as the claim query decides them (issue 13): turns go round-robin
by weight among the tenants with jobs that may start at the top priority; a lone tenant takes
every slot; pauses, gates, rate limits and concurrency keys still hold."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from collections import Counter
from pathlib import Path

from scholarsource.store import schema
from scholarsource.store.base import OPEN, Gate, Store, TaskDefaults
from scholarsource.store.sqlite import CONTESTED, FAIR_CLAIM
from tests.store.backends import Backend
from tests.store.test_sqlite import job, query_plan, run


async def _queue(store: Store, tenant: str, count: int, **fields: object) -> None:
    await store.submit_many([dataclasses.replace(job(tenant=tenant), **fields)] * count)


async def _turns(store: Store, count: int, gate: Gate = OPEN) -> list[str]:
    """The tenants of the next `count` jobs claimed one at a time (one free slot each)."""
    return [c.tenant for _ in range(count) for c in await store.claim("pool", 1, 30, gate=gate)]


def test_turns_follow_the_weights(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "big", 30)
        await _queue(store, "small", 30)
        weighted = Gate(weights=(("big", 2),))
        first = await _turns(store, 12, weighted)
        assert Counter(first) == {"big": 8, "small": 4}, first
        # The turns interleave (never three of big's in a row), not blocks of each.
        assert "bbb" not in "".join(tenant[0] for tenant in first), first
        # With equal weights the turns alternate.
        assert await _turns(store, 6) in (["big", "small"] * 3, ["small", "big"] * 3)
    run(tmp_path / "q.db", body, backend)


def test_a_small_tenant_is_not_queued_behind_a_big_backlog(tmp_path: Path,
                                                           backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "big", 200)
        assert set(await _turns(store, 5)) == {"big"}
        await _queue(store, "small", 3)
        # small's three start within its first turns, not after big's 195 left.
        assert Counter(await _turns(store, 6)) == {"big": 3, "small": 3}
        assert set(await _turns(store, 3)) == {"big"}
    run(tmp_path / "q.db", body, backend)


def test_a_lone_tenant_takes_every_slot_at_once(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "only", 10)
        await store.submit_many([job("urgent", priority=5, tenant="only")] * 2)
        # One claim fills eight slots, across priorities, highest first.
        claims = await store.claim("pool", 8, 30, gate=Gate(weights=(("only", 3),)))
        assert Counter(c.task for c in claims) == {"urgent": 2, "noop": 6}
        assert {c.tenant for c in claims} == {"only"}
    run(tmp_path / "q.db", body, backend)


def test_a_batch_is_one_turn_and_fills_up_to_the_runner_up(tmp_path: Path,
                                                          backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "a", 20)
        await _queue(store, "b", 20)
        taken: list[str] = []
        while len(taken) < 12:  # the pool's rounds: claim until the free slots are full
            claims = await store.claim("pool", 12 - len(taken), 30,
                                       gate=Gate(weights=(("a", 3),)))
            assert len({c.tenant for c in claims}) == 1  # one tenant's turn per claim
            taken += [c.tenant for c in claims]
        assert Counter(taken) == {"a": 9, "b": 3}
    run(tmp_path / "q.db", body, backend)


def test_priority_comes_before_the_turns(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "a", 5)
        await _queue(store, "b", 5)
        await _turns(store, 4)
        await _queue(store, "a", 2, priority=9)
        assert await _turns(store, 2) == ["a", "a"]
    run(tmp_path / "q.db", body, backend)


def test_a_tenant_back_from_a_pause_brings_no_credit(tmp_path: Path,
                                                     backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "a", 20, queue="held")
        await _queue(store, "b", 40)
        await _queue(store, "c", 40)
        await store.pause_queue("held", True)
        # a's jobs may not start: b and c share the slots and a's head never blocks them.
        assert Counter(await _turns(store, 10)) == {"b": 5, "c": 5}
        await store.pause_queue("held", False)
        # a comes back level with the others (at most one step ahead), not owed the ten
        # turns it sat out.
        after = Counter(await _turns(store, 9))
        assert after["a"] <= 4 and after["b"] >= 2 and after["c"] >= 2, after
    run(tmp_path / "q.db", body, backend)


def test_a_held_back_head_lets_the_tenants_other_jobs_start(tmp_path: Path,
                                                            backend: Backend) -> None:
    async def body(store: Store) -> None:
        await _queue(store, "a", 3, queue="capped", priority=5)
        await _queue(store, "a", 3, queue="open")
        await _queue(store, "b", 3, queue="open")
        # The pool's gate skips the capped queue: a's first jobs may not start, its others may.
        turns = await _turns(store, 6, Gate(skip=("capped",)))
        assert Counter(turns) == {"a": 3, "b": 3}
        assert await store.claim("pool", 5, 30, gate=Gate(skip=("capped",))) == []
    run(tmp_path / "q.db", body, backend)


def test_rate_limits_and_concurrency_keys_still_hold(tmp_path: Path, backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.publish_tasks([TaskDefaults("limited", "default", None, None,
                                                rate_limit=2, rate_window=3600.0),
                                   TaskDefaults("noop", "default", None, None)])
        for tenant in ("a", "b"):
            await store.submit_many([job("limited", tenant=tenant)] * 3)
        await store.submit(dataclasses.replace(job(tenant="a"), concurrency_key="k",
                                               concurrency_limit=1))
        await store.submit(dataclasses.replace(job(tenant="a"), concurrency_key="k",
                                               concurrency_limit=1))
        taken = [(c.tenant, c.task) for _ in range(10)
                 for c in await store.claim("pool", 3, 30)]
        assert Counter(task for _, task in taken) == {"limited": 2, "noop": 1}, taken
        assert {tenant for tenant, task in taken if task == "limited"} == {"a", "b"}
    run(tmp_path / "q.db", body, backend)


def test_the_turn_walks_indexes_and_sorts_only_its_heads(tmp_path: Path) -> None:
    """SQLite's plan (PostgreSQL's: tests/store/test_postgres.py): however long a tenant's
    backlog, a claim reads its first jobs off jobs_fair and never sorts them."""
    db = tmp_path / "q.db"
    schema.migrate(db)
    conn = sqlite3.connect(db)
    args = {"n": 4, "skip": "[]", "only": None, "now": 0.0, "weights": "{}", "owner": "o",
            "lease_until": 1.0}
    steps = conn.execute(f"EXPLAIN QUERY PLAN {FAIR_CLAIM}", args).fetchall()
    contested = query_plan(conn, CONTESTED)
    conn.close()
    turn = next(step for step, _, _, detail in steps if detail == "MATERIALIZE turn")
    assert [parent for _, parent, _, detail in steps if "TEMP B-TREE" in detail] == [turn]
    details = [detail for _, _, _, detail in steps]
    assert not [d for d in details if re.match(r"SCAN (jobs|q|h|j|k)\b", d)], details
    assert {"SEARCH jobs USING INDEX jobs_fair", "SEARCH j USING INDEX jobs_fair (tenant>?)",
            "SEARCH q USING INDEX jobs_fair (tenant=?)",
            "SEARCH q USING INDEX jobs_fair (tenant=? AND priority=?)"} <= set(details), details
    assert contested.count("SEARCH jobs USING INDEX jobs_fair") == 2, contested
