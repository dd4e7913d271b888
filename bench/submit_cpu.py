"""The API's CPU per submit without HTTP: `POST /api/jobs` through the whole Starlette app
(every middleware, validation, the group commit on aiosqlite, the answer), driven by
`--concurrency` requests at once straight into the ASGI callable.

What it leaves out is the HTTP server (Gunicorn, Uvicorn's httptools protocol): that part
is the same for every app, and is in the minimal app's figure (`scholarsource bench submit
--baseline`) as in ours. CPU is the process's (the event loop's thread and aiosqlite's
together), so the figure holds on a busy machine better than wall time does. The defaults
are a server's: `job_log` on, `access_log` off, no keys.

With `--batch N` each request is `POST /api/jobs/batch` of N no-op jobs instead, and the
figure is CPU per job (the `batch` scenario of `scholarsource bench` sends 1,000, minimal).
`--keyed` sends a fresh Idempotency-Key with each submit, as the Python client does.

    .venv/bin/python bench/submit_cpu.py --jobs 20000 [--minimal] [--keyed] [--rounds 3]
        [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scholarsource.api.app import create_app
from scholarsource.config import Config
from scholarsource.store import schema
from scholarsource.store.base import TaskDefaults
from scholarsource.store.sqlite import SqliteStore

NOOP = b'{"task":"noop"}'


@dataclass(frozen=True)
class Request:
    """What each request sends: a single submit, or a batch of `jobs` no-op jobs."""

    path: str
    body: bytes
    jobs: int
    minimal: bool
    keyed: bool = False


def request(batch: int | None, minimal: bool, keyed: bool = False) -> Request:
    """The request to repeat: POST /api/jobs, or /api/jobs/batch with `batch` jobs."""
    if batch is None:
        return Request("/api/jobs", NOOP, 1, minimal, keyed)
    return Request("/api/jobs/batch", b'{"jobs":[' + b",".join([NOOP] * batch) + b"]}",
                   batch, minimal, keyed)


_KEYS = itertools.count()


def _scope(req: Request) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
               (b"content-length", str(len(req.body)).encode())]
    if req.minimal:
        headers.append((b"prefer", b"return=minimal"))
    if req.keyed:
        headers.append((b"idempotency-key", f"bench-{next(_KEYS)}".encode()))
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "POST", "scheme": "http", "path": req.path,
            "raw_path": req.path.encode(), "root_path": "", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "state": {}}


async def _client(app: Any, count: int, req: Request, statuses: dict[int, int]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": req.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    for _ in range(count):
        await app(_scope(req), receive, send)


async def measure(data_dir: Path, jobs: int, concurrency: int, req: Request) -> float:
    """CPU microseconds per job of `jobs` jobs, sent `concurrency` requests at a time."""
    config = Config(data_dir=str(data_dir))
    schema.migrate(config.db_path)
    store = await SqliteStore.open(config.db_path)
    await store.publish_tasks([TaskDefaults("noop", "default", None, None)])
    await store.close()
    app = create_app(config)
    statuses: dict[int, int] = {}
    async with app.router.lifespan_context(app):
        # Warm-up: imports, caches, the file.
        await _client(app, max(1, 200 // req.jobs), req, statuses)
        statuses.clear()
        requests = max(1, jobs // req.jobs // concurrency)
        start = time.process_time()
        await asyncio.gather(*(_client(app, requests, req, statuses)
                               for _ in range(concurrency)))
        cpu = time.process_time() - start
    done = requests * concurrency
    if statuses != {202: done}:
        raise SystemExit(f"unexpected answers: {statuses}")
    return cpu / (done * req.jobs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minimal", action="store_true",
                        help="send Prefer: return=minimal (the answer is the id and status)")
    parser.add_argument("--batch", type=int, metavar="N",
                        help="POST /api/jobs/batch of N jobs per request instead")
    parser.add_argument("--keyed", action="store_true",
                        help="send a fresh Idempotency-Key with each submit")
    args = parser.parse_args()
    req = request(args.batch, args.minimal, args.keyed)
    results = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(asyncio.run(measure(Path(tmp), args.jobs, args.concurrency, req)))
    figures = ", ".join(f"{us:.1f}" for us in results)
    what = "request" if args.batch is None else f"job in batches of {args.batch}"
    print(f"submit CPU per {what} (us), {args.jobs} jobs, {args.concurrency} at once, "
          f"{'minimal' if args.minimal else 'whole job'} answer"
          f"{', keyed' if args.keyed else ''}: {figures}; "
          f"median {sorted(results)[len(results) // 2]:.1f}")


if __name__ == "__main__":
    main()
