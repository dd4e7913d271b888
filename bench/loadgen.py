"""An HTTP load generator: asyncio + httpx.AsyncClient, spread over a few processes.

httpx costs ~0.6 ms of CPU per request on this machine, so the load is split over
`processes` spawned generators, each holding `connections / processes` keep-alive
connections, one coroutine per connection. Every generator reports its own CPU seconds
(getrusage), so a reader can tell when the generator, not the server, was the limit.

Two modes: a fixed `duration` (throughput and latency, after a short warm-up that is not
counted) or a fixed `total` of requests sent as fast as possible (the end-to-end run).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import resource
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard, and for how long (`duration`) or how many (`total`)."""

    url: str
    path: str
    body: dict[str, Any]
    connections: int = 32
    processes: int = 2
    duration: float | None = 10.0
    total: int | None = None
    warmup: float = 1.0
    ok_status: int = 202
    client: str = "httpx"  # or "raw": see _RawConnection


@dataclass
class LoadResult:
    """Everything the generators saw, merged."""

    spec: LoadSpec
    latencies: list[float] = field(default_factory=list)  # seconds; requests begun in window
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "503", "ConnectError"
    all_statuses: Counter[str] = field(default_factory=Counter)  # warm-up included
    cpu_seconds: list[float] = field(default_factory=list)  # per generator process
    started: float = 0.0   # wall clock (time.time) when counting began
    ended: float = 0.0     # wall clock when the last counted response arrived

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def ok(self) -> int:
        return self.statuses[str(self.spec.ok_status)]

    @property
    def errors(self) -> dict[str, int]:
        """Every response that was not `ok_status`, and every exception, by name: warm-up
        included, so no failure goes unreported."""
        return {k: v for k, v in self.all_statuses.items() if k != str(self.spec.ok_status)}

    @property
    def elapsed(self) -> float:
        if self.spec.duration is not None:
            return self.spec.duration
        return max(self.ended - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0-100, nearest rank) of counted latencies, in ms."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the report."""
        return {
            "requests": self.count, "seconds": round(self.elapsed, 3),
            "requests_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p90_ms": round(self.percentile_ms(90), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "max_ms": round(self.percentile_ms(100), 2),
            "ok": self.ok, "errors": self.errors, "all_statuses": dict(self.all_statuses),
            "client": self.spec.client,
            "connections": self.spec.connections, "processes": self.spec.processes,
            "generator_cpu_s": [round(c, 2) for c in self.cpu_seconds],
            "generator_cpu_share": round(sum(self.cpu_seconds) / self.elapsed, 2),
        }


def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load in `spec.processes` spawned generators and merge what they saw."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(spec.processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=_generator, args=(spec, i, barrier, results), daemon=True)
             for i in range(spec.processes)]
    for proc in procs:
        proc.start()
    try:
        parts = _collect(procs, results, (spec.duration or 600) + spec.warmup + 120)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    merged = LoadResult(spec)
    for part in parts:
        merged.latencies.extend(array("d", part["latencies"]))
        merged.statuses.update(part["statuses"])
        merged.all_statuses.update(part["all_statuses"])
        merged.cpu_seconds.append(part["cpu"])
    merged.started = min(p["started"] for p in parts)
    merged.ended = max(p["ended"] for p in parts)
    return merged


def _collect(procs: list[Any], results: Any, timeout: float) -> list[dict[str, Any]]:
    """Every generator's report (read before join: a full pipe would block the child);
    fail fast if one died without reporting."""
    parts: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(parts) < len(procs):
        try:
            parts.append(results.get(timeout=0.5))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"load generator failed (exit codes {dead})") from None
    return parts


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _generator(spec: LoadSpec, index: int, barrier: Any, results: Any) -> None:
    """One generator process: wait for its siblings, drive its share, report."""
    connections = _share(spec.connections, spec.processes, index)
    total = None if spec.total is None else _share(spec.total, spec.processes, index)
    barrier.wait(timeout=60)
    before = resource.getrusage(resource.RUSAGE_SELF)
    part = asyncio.run(_drive(spec, connections, total))
    after = resource.getrusage(resource.RUSAGE_SELF)
    part["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results.put(part)


class _RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: a pre-built request, then
    status line, headers and a Content-Length body. Costs a few % of httpx's CPU, so it
    shows what the server can do when the generator is not the limit."""

    def __init__(self, spec: LoadSpec) -> None:
        url = httpx.URL(spec.url)
        self.host, self.port = url.host, url.port or 80
        body = json.dumps(spec.body).encode()
        self.request = (f"POST {spec.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        f"\r\n").encode() + body
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self) -> str:
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.streams
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            return head[9:12].decode()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            self.close()
            return type(exc).__name__

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without Content-Length")


@asynccontextmanager
async def _sender(spec: LoadSpec) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """One connection's `send()`: POST the body, return the status code or error name.
    httpx gets one client per connection: one shared pool of many connections cost twice
    the CPU per request here."""
    if spec.client == "raw":
        raw = _RawConnection(spec)
        try:
            yield raw.send
        finally:
            raw.close()
        return
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=spec.url, limits=limits, timeout=30.0) as client:

        async def send() -> str:
            try:
                return str((await client.post(spec.path, json=spec.body)).status_code)
            except httpx.HTTPError as exc:
                return type(exc).__name__

        yield send


async def _drive(spec: LoadSpec, connections: int, total: int | None) -> dict[str, Any]:
    latencies = array("d")
    statuses: Counter[str] = Counter()
    all_statuses: Counter[str] = Counter()
    now = time.monotonic()
    count_from = now + (spec.warmup if spec.duration is not None else 0.0)
    stop_at = count_from + spec.duration if spec.duration is not None else float("inf")
    remaining = [total if total is not None else -1]
    wall_start = time.time() + (count_from - now)
    ended = [wall_start]

    async def connection() -> None:
        async with _sender(spec) as send:
            while time.monotonic() < stop_at:
                if total is not None:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                begun = time.monotonic()
                outcome = await send()
                done = time.monotonic()
                all_statuses[outcome] += 1
                if count_from <= begun < stop_at:  # a request stalled past the end counts
                    latencies.append(done - begun)
                    statuses[outcome] += 1
                    ended[0] = time.time()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return {"latencies": latencies.tobytes(), "statuses": dict(statuses),
            "all_statuses": dict(all_statuses), "started": wall_start, "ended": ended[0]}
