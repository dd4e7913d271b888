"""What one operation of the load is, and the connections it runs on.

An `Op` is one of three kinds:
- `request`: one HTTP request (a submit, or a GET of one of `ids`);
- `frontend`: what the ScholarSource frontend does for a user: `POST /api/submit`, then
  `GET /api/status/{id}` every `poll_interval` until the job has finished;
- `sse`: submit a job, then watch `GET /api/jobs/{id}/events` until the stream ends; each
  event's delay is the time it arrived minus the time the server recorded it.

Every HTTP request is timed on its own; a frontend or SSE flow is also timed as a whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

_JSON = {"Content-Type": "application/json"}
Headers = tuple[tuple[str, str], ...]  # extra request headers, e.g. Prefer


class Recorder:
    """What one generator process saw: requests begun in the counted window, flows, lags."""

    def __init__(self, count_from: float, stop_at: float) -> None:
        self.count_from, self.stop_at = count_from, stop_at
        self.starts, self.latencies = array("d"), array("d")
        self.flows, self.lags = array("d"), array("d")
        self.statuses: Counter[str] = Counter()
        self.all_statuses: Counter[str] = Counter()
        self.operations = 0
        self.ids: list[str] = []
        self.ended = 0.0

    def counted(self, begun: float) -> bool:
        """Whether something begun at `begun` (monotonic) falls in the counted window."""
        return self.count_from <= begun < self.stop_at

    def request(self, begun: float, outcome: str) -> None:
        """One request that began at `begun` ended now with `outcome` (status or error)."""
        self.all_statuses[outcome] += 1
        if self.counted(begun):
            self.starts.append(begun - self.count_from)
            self.latencies.append(time.monotonic() - begun)
            self.statuses[outcome] += 1
            self.ended = time.time()

    def operation(self, begun: float, flow: bool = False) -> None:
        """One operation that began at `begun` is complete."""
        if self.counted(begun):
            self.operations += 1
            if flow:
                self.flows.append(time.monotonic() - begun)
            self.ended = time.time()

    def report(self, wall_start: float) -> dict[str, Any]:
        """Plain data for the parent process."""
        return {"starts": self.starts.tobytes(), "latencies": self.latencies.tobytes(),
                "flows": self.flows.tobytes(), "lags": self.lags.tobytes(),
                "statuses": dict(self.statuses), "all_statuses": dict(self.all_statuses),
                "operations": self.operations, "ids": self.ids, "started": wall_start,
                "ended": max(self.ended, wall_start)}


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: status line, headers and a
    Content-Length body. Costs a few % of httpx's CPU, so it shows what the server can do
    when the generator is not the limit."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes | None,
                      headers: Headers = ()) -> tuple[str, bytes]:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
                f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n")
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.streams
            writer.write(head.encode() + (body or b""))
            answer = await reader.readuntil(b"\r\n\r\n")
            content = await reader.readexactly(_content_length(answer))
            return answer[9:12].decode(), content
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            await self.aclose()
            return type(exc).__name__, b""

    async def aclose(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without Content-Length")


class HttpxConnection:
    """One `httpx.AsyncClient` holding one connection: a shared pool of many connections
    cost twice the CPU per request here."""

    def __init__(self, url: str) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0)

    async def request(self, method: str, path: str, body: bytes | None,
                      headers: Headers = ()) -> tuple[str, bytes]:
        try:
            response = await self.client.request(
                method, path, content=body, headers={**(_JSON if body else {}), **dict(headers)})
        except httpx.HTTPError as exc:
            return type(exc).__name__, b""
        return str(response.status_code), response.content

    async def aclose(self) -> None:
        await self.client.aclose()


Connection = RawConnection | HttpxConnection


def connect(url: str, client: str) -> Connection:
    """A connection of the kind `client` names ("httpx" or "raw")."""
    return RawConnection(url) if client == "raw" else HttpxConnection(url)


@dataclass(frozen=True)
class Op:
    """One operation a client repeats; `{id}` in `path` takes the next of `ids` and bodies
    are used in turn."""

    kind: str = "request"  # "request" | "frontend" | "sse"
    method: str = "POST"
    path: str = "/api/jobs"
    bodies: tuple[dict[str, Any], ...] = ({"task": "noop"},)
    ids: tuple[str, ...] = ()
    ok_statuses: tuple[int, ...] = (202,)
    collect_ids: bool = False
    poll_interval: float = 0.25
    headers: Headers = ()

    def _body(self, item: int) -> bytes | None:
        if self.method != "POST":
            return None
        return json.dumps(self.bodies[item % len(self.bodies)]).encode()

    async def run(self, conn: Connection, rec: Recorder, item: int,
                  intended: float | None) -> None:
        """Run operation number `item`; `intended` is its planned start in open loop."""
        begun = time.monotonic() if intended is None else intended
        if self.kind == "request":
            path = self.path.format(id=self.ids[item % len(self.ids)]) if self.ids else self.path
            status, body = await conn.request(self.method, path, self._body(item), self.headers)
            rec.request(begun, status)
            if self.collect_ids and status in ("200", "202"):
                rec.ids.append(str(json.loads(body)["id"]))
            rec.operation(begun)
            return
        submit = "/api/submit" if self.kind == "frontend" else "/api/jobs"
        status, body = await conn.request("POST", submit, self._body(item))
        rec.request(begun, status)
        if status != "202":
            return
        job_id = json.loads(body)["id"]
        if self.kind == "frontend":
            finished = await self._poll(conn, rec, job_id)
        else:
            assert isinstance(conn, HttpxConnection), "SSE needs the httpx client"
            finished = await self._watch(conn, rec, job_id)
        if finished:
            rec.operation(begun, flow=True)

    async def _poll(self, conn: Connection, rec: Recorder, job_id: str) -> bool:
        """GET /api/status/{id} every poll_interval until done; False if the counted
        window closed first."""
        while time.monotonic() < rec.stop_at:
            await asyncio.sleep(self.poll_interval)
            sent = time.monotonic()
            status, body = await conn.request("GET", f"/api/status/{job_id}", None)
            rec.request(sent, status)
            if status != "200":
                return False
            if json.loads(body)["final"]:
                return True
        return False

    async def _watch(self, conn: HttpxConnection, rec: Recorder, job_id: str) -> bool:
        """Read the job's event stream to its end, or until the counted window closes;
        the request's latency is the time to the response headers."""
        sent, opened = time.monotonic(), False
        deadline = None if rec.stop_at == float("inf") else rec.stop_at
        try:
            async with asyncio.timeout_at(deadline), conn.client.stream(
                    "GET", f"/api/jobs/{job_id}/events",
                    timeout=httpx.Timeout(30.0, read=None)) as response:
                rec.request(sent, str(response.status_code))
                opened = True
                async for line in response.aiter_lines():
                    if line.startswith("data:") and rec.counted(time.monotonic()):
                        rec.lags.append(time.time() - json.loads(line[5:])["at"])
        except TimeoutError:
            return False
        except httpx.HTTPError as exc:
            if not opened:
                rec.request(sent, type(exc).__name__)
            return False
        return True
