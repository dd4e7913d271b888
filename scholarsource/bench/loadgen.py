"""The load generator: asyncio + httpx in a few spawned processes, closed or open loop.

httpx costs ~0.6 ms of CPU per request on a small machine, so the load is split over
`processes` spawned generators, each holding its share of the `clients` connections. Every
generator reports its own CPU seconds (getrusage), so a reader can tell when the generator,
not the server, was the limit.

- Closed loop (`rate=None`): each client sends its next operation when the last one ended.
- Open loop (`rate=R`): operations start at fixed intended times, R per second in all, and
  wait for a free connection if none is idle. Latency is measured from the intended time,
  so a stalled server cannot hide its latency by slowing the generator down.

A run lasts `duration` seconds (after an uncounted warm-up) or until `total` operations are
done. What one operation is (a request, a frontend user's submit-and-poll, an SSE watch) is
in `flows.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import queue
import resource
import signal
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scholarsource.bench.flows import Op, Recorder, connect
from scholarsource.bench.stats import timeline
from scholarsource.percentiles import percentile

# Generators publish how many operations they finished this often, for the progress bar.
_PUBLISH_EVERY = 0.2


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard, and for how long (`duration`) or how many (`total`)."""

    url: str
    op: Op
    clients: int = 32
    processes: int = 2
    duration: float | None = 5.0
    total: int | None = None
    rate: float | None = None  # operations/s in all: open loop; None: closed loop
    warmup: float = 0.5
    client: str = "httpx"  # or "raw": see flows.RawConnection


@dataclass
class LoadResult:
    """Everything the generators saw, merged."""

    spec: LoadSpec
    starts: array[float] = field(default_factory=lambda: array("d"))  # s after counting began
    latencies: array[float] = field(default_factory=lambda: array("d"))  # s, counted requests
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "503", "ConnectError"
    all_statuses: Counter[str] = field(default_factory=Counter)  # warm-up included
    flows: array[float] = field(default_factory=lambda: array("d"))  # s per finished flow
    lags: array[float] = field(default_factory=lambda: array("d"))  # s, SSE event delays
    operations: int = 0
    ids: list[str] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # per generator process
    started: float = 0.0  # wall clock (time.time) when counting began
    ended: float = 0.0  # wall clock when the last counted operation ended

    @property
    def elapsed(self) -> float:
        if self.spec.duration is not None:
            return self.spec.duration
        return max(self.ended - self.started, 1e-9)

    @property
    def active_seconds(self) -> float:
        """Wall seconds the load ran, warm-up included: what server CPU is divided by."""
        warmup = self.spec.warmup if self.spec.duration is not None else 0.0
        return warmup + max(self.ended - self.started, 1e-9)

    @property
    def errors(self) -> dict[str, int]:
        """Every answer that was not the expected status, and every exception, by name:
        warm-up included, so no failure goes unreported."""
        ok = {str(s) for s in self.spec.op.ok_statuses}
        return {k: v for k, v in self.all_statuses.items() if k not in ok}

    def latency_ms(self) -> dict[str, float | None]:
        """p50/p90/p99/p99.9/max of the counted requests, in ms."""
        return percentile(self.latencies, (50, 90, 99, 99.9, 100))

    def summary(self) -> dict[str, Any]:
        """Plain numbers for the results: rates, latency, statuses, generator CPU."""
        cpu = sum(self.cpu_seconds)
        return {
            "requests": len(self.latencies), "operations": self.operations,
            "seconds": round(self.elapsed, 3),
            "requests_per_s": round(len(self.latencies) / self.elapsed, 1),
            "operations_per_s": round(self.operations / self.elapsed, 1),
            "latency_ms": self.latency_ms(), "errors": self.errors,
            "statuses": dict(self.all_statuses),
            "timeline": timeline(self.starts, self.latencies, self.elapsed),
            "generator": {"client": self.spec.client, "clients": self.spec.clients,
                          "processes": self.spec.processes, "rate": self.spec.rate,
                          "loop": "closed" if self.spec.rate is None else "open",
                          "cpu_s": [round(c, 2) for c in self.cpu_seconds],
                          "cpu_cores": round(cpu / self.elapsed, 2),
                          "busiest_process_cores": round(max(self.cpu_seconds, default=0.0)
                                                         / self.elapsed, 2)},
        }


Progress = Callable[[int], None]


def run_load(spec: LoadSpec, progress: Progress | None = None) -> LoadResult:
    """Run the load in `spec.processes` spawned generators and merge what they saw;
    `progress(done)` is called a few times a second with the operations finished so far."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(spec.processes)
    results = ctx.Queue()
    done = ctx.Array("q", spec.processes, lock=False)  # one writer per slot: no lock
    procs = [ctx.Process(target=_generator, args=(spec, i, barrier, results, done), daemon=True)
             for i in range(spec.processes)]
    for proc in procs:
        proc.start()
    try:
        limit = (spec.duration or 0) + spec.warmup + 600
        parts = _collect(procs, results, limit, lambda: progress and progress(sum(done)))
    except BaseException:  # Ctrl-C or a dead sibling: no generator waits for a join
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return _merge(spec, parts)


def _merge(spec: LoadSpec, parts: list[dict[str, Any]]) -> LoadResult:
    merged = LoadResult(spec)
    for part in parts:
        for name in ("starts", "latencies", "flows", "lags"):
            getattr(merged, name).frombytes(part[name])
        merged.statuses.update(part["statuses"])
        merged.all_statuses.update(part["all_statuses"])
        merged.operations += part["operations"]
        merged.ids.extend(part["ids"])
        merged.cpu_seconds.append(part["cpu"])
    merged.started = min(p["started"] for p in parts)
    merged.ended = max(p["ended"] for p in parts)
    return merged


def _collect(procs: list[Any], results: Any, timeout: float,
             tick: Callable[[], object]) -> list[dict[str, Any]]:
    """Every generator's report (read before join: a full pipe would block the child);
    fail fast if one died without reporting."""
    parts: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(parts) < len(procs):
        tick()
        try:
            parts.append(results.get(timeout=_PUBLISH_EVERY))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"load generator failed (exit codes {dead})") from None
    return parts


def share(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` split as evenly as possible over `parts`."""
    return total // parts + (1 if index < total % parts else 0)


def _generator(spec: LoadSpec, index: int, barrier: Any, results: Any, done: Any) -> None:
    """One generator process: set up, wait for its siblings, drive its share, report."""
    # Ctrl-C in a terminal reaches the whole foreground group; the parent alone handles it
    # (and kills the generators), so none prints a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    driver = _Driver(spec, index, done)  # clients built outside the measured CPU
    barrier.wait(timeout=60)
    before = resource.getrusage(resource.RUSAGE_SELF)
    part = asyncio.run(driver.run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    part["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results.put(part)


class _Driver:
    """One process's share of the load: its clients, its share of `total` and `rate`."""

    def __init__(self, spec: LoadSpec, index: int, done: Any) -> None:
        self.spec, self.index, self.done = spec, index, done
        self.clients = max(1, share(spec.clients, spec.processes, index))
        self.total = None if spec.total is None else share(spec.total, spec.processes, index)
        self.senders = [connect(spec.url, spec.client) for _ in range(self.clients)]
        self.started_ops = 0
        # Spread ids and bodies so that processes do not all start on the same job.
        self.items = itertools.count(index * 7919)

    def _claim(self) -> bool:
        """Whether one more operation may start."""
        if time.monotonic() >= self.stop_at:
            return False
        if self.total is not None:
            if self.started_ops >= self.total:
                return False
            self.started_ops += 1
        return True

    async def run(self) -> dict[str, Any]:
        spec, now = self.spec, time.monotonic()
        self.count_from = now + (spec.warmup if spec.duration is not None else 0.0)
        self.stop_at = (self.count_from + spec.duration if spec.duration is not None
                        else float("inf"))
        self.recorder = Recorder(self.count_from, self.stop_at)
        wall_start = time.time() + (self.count_from - now)
        publisher = asyncio.create_task(self._publish())
        senders = self.senders
        try:
            if self.spec.rate is None:
                await asyncio.gather(*(self._closed(s) for s in senders))
            else:
                await self._open(senders)
        finally:
            publisher.cancel()
            for sender in senders:
                await sender.aclose()
        self.done[self.index] = self.recorder.operations
        return self.recorder.report(wall_start)

    async def _publish(self) -> None:
        while True:
            self.done[self.index] = self.recorder.operations
            await asyncio.sleep(_PUBLISH_EVERY)

    async def _closed(self, sender: Any) -> None:
        while self._claim():
            await self.spec.op.run(sender, self.recorder, next(self.items), None)

    async def _open(self, senders: list[Any]) -> None:
        """Start one operation every 1/rate s on a free connection; latency counts from
        the intended start, so time spent waiting for a connection is part of it."""
        assert self.spec.rate is not None
        interval = self.spec.processes / self.spec.rate
        idle: asyncio.Queue[Any] = asyncio.Queue()
        for sender in senders:
            idle.put_nowait(sender)
        tasks: set[asyncio.Task[None]] = set()
        intended = time.monotonic() + interval * self.index / self.spec.processes

        async def one(item: int, at: float) -> None:
            sender = await idle.get()
            try:
                await self.spec.op.run(sender, self.recorder, item, at)
            finally:
                idle.put_nowait(sender)

        while True:
            await asyncio.sleep(max(0.0, intended - time.monotonic()))
            if not self._claim():
                break
            task = asyncio.create_task(one(next(self.items), intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            intended += interval
        if tasks:
            await asyncio.gather(*tasks)
