"""What one ProcessPoolExecutor round trip costs the process that submits it.

    python bench/executor.py [--calls 4000] [--slots 2]

Each slot's process is the single worker of its own executor (scholarsource/pool/slots.py),
but attempts travel over the slot's own pipe, not through `executor.submit`. This measures
why: no-op calls through `submit` from an asyncio loop (`asyncio.wrap_future`), one lane per
slot, no store and no HTTP. The parent's CPU per call is what the executor's feeder and
manager threads cost for every job when jobs go that way.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor


def _noop(*args: object) -> tuple[str, None, None]:
    return "ok", None, None


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(calls: int, slots: int) -> dict[str, float]:
    """Round trips per second and the parent's CPU per call."""
    mp = multiprocessing.get_context("forkserver")
    executors = [ProcessPoolExecutor(1, mp_context=mp) for _ in range(slots)]
    try:
        for executor in executors:
            executor.submit(os.getpid).result()  # start the process outside the timing

        async def lane(executor: ProcessPoolExecutor) -> None:
            for _ in range(calls // slots):
                await asyncio.wrap_future(executor.submit(_noop, "noop", {}, "id", 1, 1))

        cpu, began = _cpu(), time.perf_counter()
        await asyncio.gather(*(lane(executor) for executor in executors))
        elapsed, cpu = time.perf_counter() - began, _cpu() - cpu
    finally:
        for executor in executors:
            executor.shutdown()
    return {"calls_per_s": round(calls / elapsed), "parent_cpu_us_per_call":
            round(cpu / calls * 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    result = asyncio.run(measure(args.calls, args.slots))
    print(f"{result['calls_per_s']:,} no-op calls/s over {args.slots} single-process "
          f"executors; parent CPU {result['parent_cpu_us_per_call']} us per call")


if __name__ == "__main__":
    main()
