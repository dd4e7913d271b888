"""Claim rate on PostgreSQL without HTTP: does claim + finish stay flat as the queue grows?

The PostgreSQL twin of bench/claims.py. Against an empty, migrated database (`--database`,
a postgresql:// URL; its jobs are deleted first), it fills N queued no-op jobs in one
INSERT ... SELECT, then times `PostgresStore.claim(owner, 1, ...)` + `finish` as the
dispatcher runs them for one slot. It also prints the claim's plan: index walks only
(jobs_claim for a lone tenant, jobs_fair for a fair turn), never a sort of jobs rows. The
server shares the machine's cores
with this client unless it runs elsewhere: say which, with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psycopg
from claims import claim_pairs  # bench/ runs as a folder of scripts

from scholarsource.store.postgres import PostgresStore, sql

_WARMUP = 100
_FILL = ("INSERT INTO jobs (id, tenant, task, queue, status, params, created_at) "
         "SELECT md5(random()::text || i), 'default', 'noop', 'default', 'queued', '{}', "
         "extract(epoch FROM now()) FROM generate_series(1, %(n)s) AS i")


def fill(url: str, n: int) -> float:
    """Empty the jobs and queue `n` no-op ones; returns the seconds it took."""
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_events, rate_starts")
        conn.execute(_FILL, {"n": n})
        conn.execute("VACUUM ANALYZE jobs")
    return time.perf_counter() - began


def _reads_jobs(node: dict[str, Any]) -> bool:
    """Whether rows of jobs flow into `node` (its own sub-plans left out)."""
    return node.get("Relation Name") == "jobs" or any(
        _reads_jobs(child) for child in node.get("Plans", [])
        if child["Parent Relationship"] not in ("InitPlan", "SubPlan"))


def plan(url: str) -> list[str]:
    """The claim's plan nodes, outermost first; a sort of jobs rows is marked "(of jobs)"
    (the turn's own sorts, of a head per tenant and of the claimed rows, are not)."""
    with psycopg.connect(url) as conn:
        (row,) = conn.execute("EXPLAIN (FORMAT JSON) " + sql.CLAIM,
                              {"n": 1, "skip": [], "only": None, "now": 0.0, "weights": "{}",
                               "owner": "bench", "lease_until": 0.0}).fetchall()
    nodes, todo = [], [row[0][0]["Plan"]]
    while todo:
        node = todo.pop(0)
        nodes.append(node["Node Type"] + (f" ({node['Index Name']})"
                                          if "Index Name" in node else "")
                     + (" (of jobs)" if "Sort" in node["Node Type"] and _reads_jobs(node)
                        else ""))
        todo.extend(node.get("Plans", []))
    return nodes


async def claim_loop(url: str, count: int) -> tuple[int, float]:
    """bench/claims.py's claim + finish loop, through PostgresStore."""
    store = await PostgresStore.open(url, role="pool")
    try:
        return await claim_pairs(store, count)
    finally:
        await store.close()


def measure(url: str, n: int, count: int) -> dict[str, Any]:
    filling = fill(url, n)
    nodes = plan(url)
    done, seconds = asyncio.run(claim_loop(url, min(count, n - _WARMUP)))
    return {"queued": n, "claims": done, "claims_per_s": round(done / seconds, 1),
            "fill_seconds": round(filling, 1), "plan": nodes,
            "sorts": any(node.endswith("(of jobs)") for node in nodes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="postgresql:// URL, migrated")
    parser.add_argument("--queued", default="1000,1000000", help="queue sizes, comma-separated")
    parser.add_argument("--claims", type=int, default=2000)
    args = parser.parse_args()
    for n in (int(v) for v in args.queued.split(",")):
        r = measure(args.database, n, args.claims)
        print(f"{n:>9,} queued: {r['claims_per_s']:>8,.0f} claim+finish/s "
              f"(fill {r['fill_seconds']} s); sort in plan: {r['sorts']}")
    print("claim plan:", " / ".join(r["plan"]))


if __name__ == "__main__":
    main()
