"""Many job event streams held open while another load runs (`bench sse --streams N`).

One spawned process submits N jobs delayed by an hour (they wait, using no slot) and opens
`GET /api/jobs/{id}/events` for each: N quiet streams, as N users with a page open on their
job. Once they are all open, the parent runs its submit load; then this process cancels the
N jobs, and each stream must receive its job's final `cancelled` event and end: the delay of
those events is the fan-out's, under load. Streams are httpx's, asyncio, one connection each.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import httpx

from scholarsource.filelimit import raise_file_limit
from scholarsource.percentiles import percentile

HELD_DELAY = 3600.0  # the held jobs wait this long: they never run during a bench
_OPEN_TIMEOUT = 180.0  # seconds to submit and open every stream
_PARALLEL_POSTS = 64  # submits and cancels in flight at once


class HeldStreams:
    """`with HeldStreams(url, n) as held:` N streams are open inside; `held.result()` after
    the block says how they ended."""

    def __init__(self, url: str, streams: int) -> None:
        self.url, self.streams = url, streams
        self.opened_s = 0.0  # how long submitting and opening them all took
        self._result: dict[str, Any] = {}
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_main, args=(url, streams, child), daemon=True)

    def __enter__(self) -> HeldStreams:
        began = time.monotonic()
        self._process.start()
        if not self._conn.poll(_OPEN_TIMEOUT):
            self._process.kill()
            raise RuntimeError(f"{self.streams} streams were not open after {_OPEN_TIMEOUT} s")
        kind, payload = self._conn.recv()
        if kind != "open":
            self._process.join(5)
            raise RuntimeError(f"holding {self.streams} streams failed: {payload}")
        self.opened_s = round(time.monotonic() - began, 2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        if self._conn.poll(_OPEN_TIMEOUT):
            kind, payload = self._conn.recv()
            self._result = payload if kind == "done" else {"failed": payload}
        else:
            self._result = {"failed": "the streams did not end after their jobs were cancelled"}
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def result(self) -> dict[str, Any]:
        """The streams held, how long opening them took, and how their final events came."""
        return {"streams": self.streams, "opened_s": self.opened_s, **self._result}


def _main(url: str, streams: int, conn: Connection) -> None:
    try:
        asyncio.run(_hold(url, streams, conn))
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))


async def _hold(url: str, streams: int, conn: Connection) -> None:
    raise_file_limit()  # a socket per stream
    ids = await _post_all(url, ["/api/jobs"] * streams, {"task": "noop", "delay": HELD_DELAY})
    if len(ids) < streams:
        raise RuntimeError(f"only {len(ids)} of {streams} held jobs were accepted")
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits,
                                 timeout=httpx.Timeout(60.0, read=None)) as client:
        opened = [0]
        all_open = asyncio.Event()

        def one_open() -> None:
            opened[0] += 1
            if opened[0] == streams:
                all_open.set()

        watches = [asyncio.ensure_future(_watch(client, job_id, one_open)) for job_id in ids]
        await asyncio.wait_for(all_open.wait(), _OPEN_TIMEOUT)
        conn.send(("open", None))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
        cancelled = await _post_all(url, [f"/api/jobs/{job_id}/cancel" for job_id in ids])
        ends = await asyncio.wait_for(asyncio.gather(*watches), _OPEN_TIMEOUT)
    lags = [lag for _, lag in ends if lag is not None]
    conn.send(("done", {
        "events": sum(count for count, _ in ends),
        "ended_on_final_event": len(lags),
        "cancel_errors": streams - len(cancelled),
        "final_event_delay_ms": percentile(lags),
    }))


async def _post_all(url: str, paths: list[str], body: dict[str, Any] | None = None) -> list[str]:
    """POST each path, _PARALLEL_POSTS at a time, on a client of its own (whose connections
    never sit idle for the server to close under it); the ids of the jobs answered 2xx."""
    gate = asyncio.Semaphore(_PARALLEL_POSTS)
    limits = httpx.Limits(max_connections=_PARALLEL_POSTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def post(path: str) -> httpx.Response:
            async with gate:
                return await client.post(path, json=body)

        answers = await asyncio.gather(*(post(path) for path in paths))
    return [a.json()["id"] for a in answers if a.is_success]


async def _watch(client: httpx.AsyncClient, job_id: str,
                 one_open: Any) -> tuple[int, float | None]:
    """One held stream to its end: the events it got, and the delay (s) of its final one."""
    count, final_lag = 0, None
    async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        response.raise_for_status()
        one_open()  # the headers are in: the server streams (a waiting job has no event yet)
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = json.loads(line[5:])
            count += 1
            if data.get("final"):
                final_lag = time.time() - data["at"]
    return count, final_lag
