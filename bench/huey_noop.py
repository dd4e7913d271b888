"""The peer to `scholarsource bench e2e-noop --client raw --jobs 10000`: the same no-op jobs
through Huey, SQLite storage, `huey_consumer -w 2 -k process`, timed from the first enqueue
to the last result stored.

Huey is never a dependency of ScholarSource: install it in a throwaway venv and run this
script with that venv's Python (it needs nothing from this project):

    python3 -m venv /tmp/huey-venv && /tmp/huey-venv/bin/pip install huey psutil
    /tmp/huey-venv/bin/python bench/huey_noop.py --jobs 10000

Huey enqueues in-process (one SQLite transaction per `enqueue`, from this script's one
thread), with no HTTP in the way; our figure goes through HTTP. The consumer starts, idle,
before the clock starts; its polling delay is set to 10 ms (`-d 0.01 -m 0.1`), not Huey's
default 100 ms growing to 10 s when idle, so that neither its start nor a moment of an empty
queue costs it time. CPU is the consumer's process tree's (master and workers) plus this
script's enqueues, from psutil.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from huey import SqliteHuey
from huey import __version__ as huey_version

# fsync=False: synchronous = OFF, no flush per commit. Ours runs durability = "normal"
# (synchronous = NORMAL: in WAL mode no flush per commit either, only at checkpoints), so this
# is a shade kinder to Huey; its default (FULL, a flush per enqueue and per result) would make
# it more than ten times slower on this disk (130-160 jobs/s against ~1,900).
# The file is the run's (run() sets it); until then an in-memory database, so that importing
# this module leaves no file behind.
huey = SqliteHuey("bench", filename=os.environ.get("HUEY_BENCH_DB", ":memory:"),
                  fsync=False)


@huey.task()
def noop() -> bool:
    return True  # Huey does not store a None result: True lets the script count results


def _tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run(jobs: int, workers: int) -> dict[str, float]:
    """Jobs/s and CPU µs per job for `jobs` no-op jobs through a fresh consumer."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HUEY_BENCH_DB": str(Path(tmp) / "huey.db"),
               "PYTHONPATH": str(Path(__file__).resolve().parent)}
        huey.storage.filename = env["HUEY_BENCH_DB"]
        huey.storage.initialize_schema()
        consumer_bin = Path(sys.executable).with_name("huey_consumer")
        with open(Path(tmp) / "consumer.log", "wb") as log:
            consumer = subprocess.Popen(
                [str(consumer_bin), "huey_noop.huey", "-w", str(workers), "-k", "process",
                 "-d", "0.01", "-m", "0.1"],
                env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            root = psutil.Process(consumer.pid)
            deadline = time.monotonic() + 30
            while len(root.children(recursive=True)) < workers:  # workers up before timing
                if time.monotonic() > deadline or consumer.poll() is not None:
                    raise SystemExit(f"huey_consumer did not start: see {log.name}")
                time.sleep(0.05)
            time.sleep(0.5)
            cpu_before, own_before = _tree_cpu(root), time.process_time()
            began = time.perf_counter()
            for _ in range(jobs):
                noop()
            enqueued = time.perf_counter() - began
            while huey.storage.result_store_size() < jobs:
                time.sleep(0.002)
            elapsed = time.perf_counter() - began
            cpu = _tree_cpu(root) - cpu_before + time.process_time() - own_before
        finally:
            os.killpg(consumer.pid, signal.SIGTERM)
            try:
                consumer.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(consumer.pid, signal.SIGKILL)
                consumer.wait()
    return {"jobs_per_s": jobs / elapsed, "seconds": elapsed, "enqueue_s": enqueued,
            "cpu_us_per_job": cpu / jobs * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    result = run(args.jobs, args.workers)
    if args.json:
        args.json.write_text(json.dumps({"peer": "huey", "version": huey_version,
                                         "jobs": args.jobs, "workers": args.workers,
                                         "load_1m": os.getloadavg()[0], **result}, indent=1))
    print(f"huey: {args.jobs} no-op jobs in {result['seconds']:.2f} s: "
          f"{result['jobs_per_s']:,.0f} jobs/s (all enqueued after {result['enqueue_s']:.2f} s), "
          f"{result['cpu_us_per_job']:.0f} us CPU per job "
          f"(consumer + enqueue), -w {args.workers} -k process")


if __name__ == "__main__":
    # Run as the module the consumer imports, so the task's name (module.function) is the
    # one the consumer knows; and let TERM stop the consumer through the `finally`.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import huey_noop

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    huey_noop.main()
