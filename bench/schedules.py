"""Periodic jobs on a real server: how late each fire is, and that none is missed or doubled.

    .venv/bin/python bench/schedules.py [--schedules 20] [--every 1s] [--seconds 20]
                                        [--rate 0] [--json FILE]

Starts `scholarsource serve` with `--schedules` schedules of the no-op task, each firing
`--every`, optionally under a flow of `--rate` submitted no-op jobs per second, for
`--seconds`. Then, from the database: the fire lag (the job's created_at minus its
scheduled_for: how late the pool inserted it), the start lag (started_at minus
scheduled_for), fires missed between each schedule's first and last fire, and fires with
more than one job. Exit 1 if any fire was missed or doubled.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from scholarsource.config import parse_duration
from scholarsource.launcher import free_port, launch, serve_argv
from scholarsource.percentiles import percentile


def config_text(schedules: int, every: float) -> str:
    return "".join(f'[[schedules]]\nname = "s{n}"\ntask = "noop"\nevery = {every}\n\n'
                   for n in range(schedules))


def submit_flow(url: str, rate: float, stop: threading.Event) -> None:
    """`rate` no-op submits per second at fixed intended times, until `stop`."""
    with httpx.Client(base_url=url, timeout=30) as client:
        start, n = time.monotonic(), 0
        while not stop.is_set():
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            client.post("/api/jobs", json={"task": "noop"})
            n += 1


def measure(db: Path, every: float) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT schedule, scheduled_for, created_at, started_at FROM jobs "
                        "WHERE schedule IS NOT NULL AND triggered = 0").fetchall()
    doubled = conn.execute("SELECT count(*) FROM (SELECT 1 FROM jobs WHERE schedule IS NOT "
                           "NULL AND triggered = 0 GROUP BY schedule, scheduled_for "
                           "HAVING count(*) > 1)").fetchone()[0]
    conn.close()
    fires: dict[str, list[float]] = {}
    for name, at, _, _ in rows:
        fires.setdefault(name, []).append(at)
    missed = sum(round((max(ats) - min(ats)) / every) + 1 - len(set(ats))
                 for ats in fires.values())
    return {"fires": len(rows), "missed": missed, "doubled": doubled,
            "fire_lag_ms": percentile([created - at for _, at, created, _ in rows]),
            "start_lag_ms": percentile([started - at for _, at, _, started in rows
                                        if started is not None])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=20)
    parser.add_argument("--every", default="1s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0, help="no-op submits per second")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    every = parse_duration(args.every)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(config_text(args.schedules, every))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
        port = free_port()
        server = launch(serve_argv(port, Path(tmp) / "data", workers=2, slots=args.slots,
                                   extra=("--config", str(config))),
                        url=f"http://127.0.0.1:{port}", log_path=Path(tmp) / "server.log",
                        env=env)
        stop = threading.Event()
        flow = threading.Thread(target=submit_flow, args=(server.url, args.rate, stop))
        try:
            if args.rate > 0:
                flow.start()
            stop.wait(args.seconds)
        finally:
            stop.set()
            if flow.is_alive():
                flow.join()
            server.stop(timeout=15)
        result = {"schedules": args.schedules, "every": every, "seconds": args.seconds,
                  "rate": args.rate, "slots": args.slots,
                  **measure(Path(tmp) / "data" / "scholarsource.db", every)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["missed"] or result["doubled"] else 0


if __name__ == "__main__":
    sys.exit(main())
