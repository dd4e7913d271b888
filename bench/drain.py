"""The pool alone: how fast the dispatcher and its slots drain a full queue.

    python bench/drain.py [--jobs 5000] [--slots 2] [--rounds 1]

No HTTP and no API: N no-op jobs are inserted into a fresh database, then the real
Dispatcher and real slot processes (scholarsource.pool) run until the queue is empty
(`Dispatcher.drain`). Reports jobs/s and CPU per job of the pool process (the sidecar: the
dispatcher's loop and every thread it has) and of the slot processes, apart: the pool's
figure is the one that bounds end-to-end throughput on a small box. CPU time, not wall
time, so other load on the box moves the figures little; `--rounds` repeats the drain on
fresh databases and prints the median.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from scholarsource.config import load_config
from scholarsource.pool.dispatcher import Dispatcher
from scholarsource.pool.slots import Slots, SlotSettings
from scholarsource.store.base import NewJob
from scholarsource.store.factory import migrate_store, open_store


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _slots_cpu(pids: list[int]) -> float:
    times = [psutil.Process(pid).cpu_times() for pid in pids]
    return sum(t.user + t.system for t in times)


async def measure(jobs: int, slot_count: int, data_dir: Path) -> dict[str, float]:
    """Drain `jobs` no-op jobs with `slot_count` slots; jobs/s and CPU per job by role."""
    config = load_config(env={}, overrides={"data_dir": str(data_dir)})
    await asyncio.to_thread(migrate_store, config)  # it runs its own event loop if it needs one
    store = await open_store(config, "pool")
    slots = Slots(slot_count, SlotSettings.of(config))
    try:
        await store.submit_many([NewJob("noop", {}, "default", 0, 1) for _ in range(jobs)])
        slots.start()
        await slots.started()
        pids = slots.pids()
        cpu, slots_cpu, began = _cpu(), _slots_cpu(pids), time.perf_counter()
        await Dispatcher(config, store, slots, owner="bench").drain()
        elapsed, cpu = time.perf_counter() - began, _cpu() - cpu
        slots_cpu = _slots_cpu(pids) - slots_cpu
        counts = await store.counts()
    finally:
        slots.stop(kill=False)
        await store.close()
    assert counts["succeeded"] == jobs, counts
    return {"jobs_per_s": jobs / elapsed, "pool_cpu_us_per_job": cpu / jobs * 1e6,
            "slots_cpu_us_per_job": slots_cpu / jobs * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    runs = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(asyncio.run(measure(args.jobs, args.slots, Path(tmp))))
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"{result['jobs_per_s']:,.0f} no-op jobs/s drained by {args.slots} slot(s); CPU per "
          f"job: pool {result['pool_cpu_us_per_job']:.0f} us, slots "
          f"{result['slots_cpu_us_per_job']:.0f} us (median of {args.rounds})")


if __name__ == "__main__":
    main()
