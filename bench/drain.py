"""The pool alone: how fast the dispatcher and its slots drain a full queue.

    python bench/drain.py [--jobs 5000] [--slots 2]

No HTTP and no API: N no-op jobs are inserted into a fresh database, then the real
Dispatcher and real slot processes (scholarsource.pool) run until the queue is empty
(`Dispatcher.drain`). Reports jobs/s and the pool process's own CPU per job (slots not
included), the number that bounds end-to-end throughput on a small box.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from scholarsource.config import load_config
from scholarsource.pool.dispatcher import Dispatcher
from scholarsource.pool.slots import Slots, SlotSettings
from scholarsource.store.base import NewJob
from scholarsource.store.factory import migrate_store, open_store


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(jobs: int, slot_count: int, data_dir: Path) -> dict[str, float]:
    """Drain `jobs` no-op jobs with `slot_count` slots; jobs/s and pool CPU per job."""
    config = load_config(env={}, overrides={"data_dir": str(data_dir)})
    await asyncio.to_thread(migrate_store, config)  # it runs its own event loop if it needs one
    store = await open_store(config, "pool")
    slots = Slots(slot_count, SlotSettings.of(config))
    try:
        await store.submit_many([NewJob("noop", {}, "default", 0, 1) for _ in range(jobs)])
        slots.start()
        await slots.started()
        cpu, began = _cpu(), time.perf_counter()
        await Dispatcher(config, store, slots, owner="bench").drain()
        elapsed, cpu = time.perf_counter() - began, _cpu() - cpu
        counts = await store.counts()
    finally:
        slots.stop(kill=False)
        await store.close()
    assert counts["succeeded"] == jobs, counts
    return {"jobs_per_s": round(jobs / elapsed), "pool_cpu_us_per_job":
            round(cpu / jobs * 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(args.jobs, args.slots, Path(tmp)))
    print(f"{result['jobs_per_s']:,} no-op jobs/s drained by {args.slots} slot(s); pool CPU "
          f"{result['pool_cpu_us_per_job']} us per job (slots not counted)")


if __name__ == "__main__":
    main()
