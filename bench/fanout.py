"""Fan-out from inside a task (ctx.submit, ctx.continue_with) on a real server.

    python bench/fanout.py [--children 10000] [--rounds 7] [--small 100] [--slots 2]
                           [--database URL] [--json out.json]

One `scholarsource serve` (SQLite in a scratch data directory, or --database) runs
bench/fanout_tasks.py: a root task submits N no-op children and returns
ctx.continue_with(gather, after=children). From the store's own timestamps:
- throughput: children/s from the first child's start to the last child's finish, for one
  fan-out of --children, and how long its root ran (its submits: the slot checks each
  child, the pool checks it again and writes the children in batches);
- gather latency: the continuation's started_at minus the last child's finished_at, for
  that fan-out and for --rounds fan-outs of --small children (median, max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from scholarsource.config import Config
from scholarsource.launcher import free_port, launch, serve_argv
from scholarsource.store.base import Job
from scholarsource.store.factory import open_store

HERE = Path(__file__).resolve().parent


def fan_out(client: httpx.Client, n: int, timeout: float) -> str:
    """Submit one root of `n` children; wait until its continuation ended; its id."""
    root = client.post("/api/jobs", json={"task": "bench_fan_out", "params": {"n": n}})
    root.raise_for_status()
    deadline = time.monotonic() + timeout
    then: str | None = None
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{then or root.json()['id']}").json()
        if job["final"] and then is None:
            then = job["result"]["continued_by"]
        elif job["final"]:
            assert job["result"] == n, job
            return str(root.json()["id"])
        time.sleep(0.05)
    raise TimeoutError(f"the fan-out of {n} did not end in {timeout:.0f}s")


def figures(tree: list[Job], root: str) -> dict[str, float]:
    """Throughput and gather latency of one fan-out, from its workflow's jobs."""
    (then,) = [job for job in tree if job.depends_on]
    (top,) = [job for job in tree if job.id == root]
    kids = [job for job in tree if job.id not in (root, then.id)]
    first = min(job.started_at or 0.0 for job in kids)
    last = max(job.finished_at or 0.0 for job in kids)
    assert then.started_at is not None and top.run_time is not None
    return {"children": len(kids), "root_s": round(top.run_time, 3),
            "seconds": round(last - first, 3),
            "children_per_s": round(len(kids) / (last - first), 1),
            # Children that finished once the continuation waited for them, and their rate.
            "after_then": len(after := [job.finished_at for job in kids
                                        if (job.finished_at or 0.0) > then.created_at]),
            "after_then_per_s": round(len(after) / max(last - then.created_at, 1e-9), 1),
            "gather_ms": round((then.started_at - last) * 1000, 2)}


async def trees(config: Config, roots: list[str]) -> list[list[Job]]:
    store = await open_store(config, "cli")
    try:
        return [await store.workflow("default", root) for root in roots]
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", default="")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-") as work:
        data = Path(work) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
        env.update(SCHOLARSOURCE_TASK_MODULES="fanout_tasks",
                   SCHOLARSOURCE_MAX_CHILDREN=str(max(args.children, args.small)),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(HERE),
                                                            env.get("PYTHONPATH")])))
        if args.database:
            env["SCHOLARSOURCE_DATABASE"] = args.database
        port = free_port()
        server = launch(serve_argv(port, data, workers=args.workers, slots=args.slots),
                        url=f"http://127.0.0.1:{port}", log_path=Path(work) / "server.log",
                        env=env)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                big = fan_out(client, args.children, timeout=600)
                small = [fan_out(client, args.small, timeout=60) for _ in range(args.rounds)]
        finally:
            server.stop(15)
        config = Config(data_dir=data, **({"database": args.database} if args.database
                                           else {}))
        found = asyncio.run(trees(config, [big, *small]))
    result: dict[str, Any] = {
        "cpus": os.cpu_count(), "slots": args.slots, "store": "postgres" if args.database
        else "sqlite", "big": figures(found[0], big),
        "small": [figures(tree, root) for tree, root in zip(found[1:], small, strict=True)]}
    gathers = [run["gather_ms"] for run in [result["big"], *result["small"]]]
    result["gather_ms_median"] = statistics.median(gathers)
    result["gather_ms_max"] = max(gathers)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
