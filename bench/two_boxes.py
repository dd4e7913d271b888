"""Two boxes on one PostgreSQL: what a second `scholarsource serve` buys, and what it costs.

    python bench/two_boxes.py [--database URL] [--jobs 2000] [--json out.json]

Real servers (`python -m scholarsource serve`, each with its own port and data directory, so
its own box id), all of one size (--workers, --slots), on one PostgreSQL database:
- e2e no-op jobs/s, PostgreSQL against SQLite in the same run: the load of `scholarsource
  bench e2e-noop` (its raw HTTP client, closed loop) against one box on each store;
- two boxes against one: the same load sent half to each box at once, the jobs/s of all
  jobs (first created to last finished) and of the half sent to each box (either box may
  run any of them);
- rescue: kill -9 of one box's whole process tree while it runs 0.5 s sleep jobs; for each
  job it held, the time from the kill until the other box started it again and finished it
  (lease_seconds --lease, the sweep every lease / 3);
- idle pickup across boxes: one no-op at a time submitted on box A, whose only slot is held
  by a long sleep job, so box B runs it: started_at - created_at, p50 and p99.

The database's tables are emptied before each part (its schema is kept; a fresh one is
migrated by the first server). Without --database the script starts a throwaway cluster
with the tests' tests/pgcluster.py (a checkout of the repository, PostgreSQL's initdb on
this machine). PostgreSQL and the load generator share this machine's cores with the
servers: the output says how many there are.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from scholarsource.bench.flows import Op
from scholarsource.bench.jobruns import fetch, job_figures, slot_count, wait_idle
from scholarsource.bench.loadgen import LoadSpec, run_load
from scholarsource.launcher import ServerProcess, free_port, launch, serve_argv
from scholarsource.percentiles import percentile
from scholarsource.store.owner import box_of

ROOT = Path(__file__).resolve().parents[1]
SLEEP = 0.5  # seconds per job in the rescue part: long enough for the kill to catch some


class Boxes:
    """Servers started for one part of the run, in a scratch directory; all stopped (TERM,
    wait, KILL of the group) when the part ends."""

    def __init__(self, work: Path, stack: ExitStack, workers: int, slots: int) -> None:
        self.work, self.stack, self.workers, self.slots = work, stack, workers, slots

    def start(self, name: str, database: str | None, slots: int | None = None,
              **settings: str) -> ServerProcess:
        """A server whose data directory is `name` (SQLite there when `database` is None)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
        env.update({f"SCHOLARSOURCE_{k.upper()}": v for k, v in settings.items()})
        if database is not None:
            env["SCHOLARSOURCE_DATABASE"] = database
        port = free_port()
        server = launch(serve_argv(port, self.work / name, workers=self.workers,
                                   slots=slots or self.slots),
                        url=f"http://127.0.0.1:{port}", log_path=self.work / f"{name}.log",
                        env=env)
        self.stack.callback(server.stop, 15)
        return server


@contextmanager
def boxes(workers: int, slots: int) -> Iterator[Boxes]:
    with tempfile.TemporaryDirectory(prefix="two-boxes-") as work, ExitStack() as stack:
        yield Boxes(Path(work), stack, workers, slots)


def empty(url: str) -> None:
    """Delete every row but the schema version, as tests/pgcluster.py's pg_url does."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_version'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def noop_load(urls: list[str], jobs: int, clients: int) -> dict[str, Any]:
    """`jobs` no-op jobs sent over HTTP (the bench's raw client, closed loop), split evenly
    between `urls` at once, then awaited: each URL's figures and those of all jobs (jobs/s =
    succeeded / first created to last finished, from the server's timestamps)."""
    specs = [LoadSpec(url, Op(collect_ids=True), clients=clients // len(urls), processes=1,
                      duration=None, total=jobs // len(urls), warmup=0.0, client="raw")
             for url in urls]
    with ThreadPoolExecutor(len(specs)) as loads:
        results = list(loads.map(run_load, specs))
    every: list[dict[str, Any]] = []
    per_url = []
    for url, load in zip(urls, results, strict=True):
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_idle(client, timeout=300)
            slots = slot_count(client)
            done = fetch(client, set(load.ids))
        every += done
        per_url.append(figures(done, len(load.ids), slots))
    total = figures(every, sum(len(load.ids) for load in results),
                    sum(f["slots"] for f in per_url))
    return {**total, "sent_to_each": per_url} if len(urls) > 1 else total


def figures(jobs: list[dict[str, Any]], accepted: int, slots: int) -> dict[str, Any]:
    got = job_figures(jobs, slots, 0.0)
    return {"jobs": got["count"], "lost": accepted - len(jobs), "statuses": got["statuses"],
            "jobs_per_s": got["jobs_per_s"], "slots": slots,
            "wait_ms_p50": got["wait_ms"]["p50"], "wait_ms_p99": got["wait_ms"]["p99"]}


def throughput(args: argparse.Namespace, database: str) -> dict[str, Any]:
    """No-op jobs/s: SQLite, one PostgreSQL box, two PostgreSQL boxes."""
    out: dict[str, Any] = {}
    with boxes(args.workers, args.slots) as made:
        out["sqlite_one_box"] = noop_load([made.start("sqlite", None).url], args.jobs,
                                          args.clients)
    empty(database)
    with boxes(args.workers, args.slots) as made:
        out["postgres_one_box"] = noop_load([made.start("a", database).url], args.jobs,
                                            args.clients)
    empty(database)
    with boxes(args.workers, args.slots) as made:
        urls = [made.start(name, database).url for name in ("a", "b")]
        out["postgres_two_boxes"] = noop_load(urls, args.jobs, args.clients)
    return out


def rescue(args: argparse.Namespace, database: str) -> dict[str, Any]:
    """kill -9 of box A's tree mid-run: how long until B has finished each job A held."""
    empty(database)
    with boxes(args.workers, args.slots) as made:
        a, b = (made.start(name, database, lease_seconds=str(args.lease))
                for name in ("a", "b"))
        with httpx.Client(timeout=30) as client:
            for i in range(40):
                client.post(f"{(a, b)[i % 2].url}/api/jobs", json={
                    "task": "sleep", "params": {"seconds": SLEEP}, "max_attempts": 3}
                            ).raise_for_status()
        box = box_of(str(made.work / "a"))
        running = ("SELECT id FROM jobs WHERE status = 'running' "
                   "AND left(owner, length(%s)) = %s")
        while not rows(database, running, box, box):
            time.sleep(0.01)
        os.killpg(a.proc.pid, signal.SIGKILL)
        killed = time.time()
        held = [job for (job,) in rows(database, running, box, box)]
        deadline = time.monotonic() + args.lease + 60
        while rows(database, "SELECT 1 FROM jobs WHERE id = ANY(%s) AND NOT status = "
                             "ANY('{succeeded,dead}') LIMIT 1", held):
            if time.monotonic() > deadline:
                raise RuntimeError("box B did not finish box A's jobs")
            time.sleep(0.05)
        done = rows(database, "SELECT status, crashes, started_at, finished_at FROM jobs "
                              "WHERE id = ANY(%s)", held)
    return {"lease_seconds": args.lease, "sweep_every_s": round(args.lease / 3, 3),
            "job_seconds": SLEEP, "held": len(held),
            "statuses": sorted({status for status, *_ in done}),
            "crashes_counted": sum(crashes for _, crashes, _, _ in done),
            "kill_to_restart_ms": percentile(start - killed for _, _, start, _ in done),
            "kill_to_finish_ms": percentile(end - killed for _, _, _, end in done)}


def pickup(args: argparse.Namespace, database: str) -> dict[str, Any]:
    """Submit on A (its one slot held by a long job), run on B: started_at - created_at."""
    empty(database)
    with boxes(args.workers, args.slots) as made, httpx.Client(timeout=30) as client:
        a = made.start("a", database, slots=1)
        blocker = client.post(f"{a.url}/api/jobs", json={
            "task": "sleep", "params": {"seconds": 3600}}).raise_for_status().json()["id"]
        while client.get(f"{a.url}/api/jobs/{blocker}").json()["status"] != "running":
            time.sleep(0.01)
        b = made.start("b", database)  # after A's slot is taken, so A holds the blocker
        waits = []
        for _ in range(args.pickups):
            job = client.post(f"{a.url}/api/jobs", json={"task": "noop"}).raise_for_status()
            job_id = job.json()["id"]
            time.sleep(0.02)  # let the pools work undisturbed, as `bench pickup` does
            deadline = time.monotonic() + 30
            while not (got := client.get(f"{b.url}/api/jobs/{job_id}").json())["final"]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} was not run within 30 s")
                time.sleep(0.005)
            waits.append(got["started_at"] - got["created_at"])
        client.post(f"{a.url}/api/jobs/{blocker}/cancel")
    return {"jobs": len(waits), "wait_ms": percentile(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="an empty or scholarsource PostgreSQL database "
                        "(postgresql://...); its rows are deleted. Default: a throwaway cluster")
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per throughput run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="API workers per box")
    parser.add_argument("--slots", type=int, default=2, help="job slots per box")
    parser.add_argument("--lease", type=float, default=5.0, help="lease_seconds (rescue)")
    parser.add_argument("--pickups", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    with ExitStack() as stack:
        database = args.database or stack.enter_context(throwaway_database())
        results = {
            "machine": f"{os.cpu_count()} cores, PostgreSQL {server_version(database)} on "
                       "the same machine (it shares the cores with the servers and the load)",
            "size": {"workers": args.workers, "slots": args.slots},
            "throughput": throughput(args, database),
            "rescue": rescue(args, database),
            "pickup_across_boxes": pickup(args, database)}
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


def summary(results: dict[str, Any]) -> str:
    """The headline figures, one line each."""
    runs, rescued = results["throughput"], results["rescue"]
    two = runs["postgres_two_boxes"]
    lines = [results["machine"], f"each box: {results['size']}"]
    lines += [f"{name:<20} {run['jobs_per_s']:>8.1f} no-op jobs/s ({run['jobs']} jobs, "
              f"lost {run['lost']})" for name, run in runs.items()]
    lines.append("  sent to each box:   " + ", ".join(
        f"{half['jobs_per_s']:.1f} jobs/s" for half in two["sent_to_each"]))
    lines.append(f"rescue (lease {rescued['lease_seconds']} s): {rescued['held']} jobs held, "
                 f"kill to restart p50 {rescued['kill_to_restart_ms']['p50']:.0f} ms, "
                 f"kill to finished max {rescued['kill_to_finish_ms']['max']:.0f} ms, "
                 f"crashes counted {rescued['crashes_counted']}")
    wait = results["pickup_across_boxes"]["wait_ms"]
    lines.append(f"idle pickup A -> B: p50 {wait['p50']:.1f} ms, p99 {wait['p99']:.1f} ms")
    return "\n".join(lines)


def server_version(url: str) -> str:
    ((version,),) = rows(url, "SHOW server_version")
    return str(version)


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A cluster of tests/pgcluster.py with its migrated database; stopped at the end."""
    sys.path.insert(0, str(ROOT))
    from tests import pgcluster

    bindir = pgcluster.find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL here (initdb): pass --database")
    cluster = pgcluster.start(bindir)
    try:
        pgcluster.make_template(cluster)
        yield cluster.url(pgcluster.WORK)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
