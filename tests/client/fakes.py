"""A scripted server for the client's unit tests: an httpx transport that answers each
request with the next of a list of handlers, and records what it was sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from scholarsource.client import Client, RetryPolicy

Handler = Callable[[httpx.Request], httpx.Response]
# No real waiting between retries in unit tests: the waits themselves are tested apart.
FAST = RetryPolicy(retries=3, backoff=0.001, max_backoff=0.001)


def job_json(job_id: str = "j1", status: str = "queued", **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "task": "echo", "status": status,
            "final": status in ("succeeded", "dead", "cancelled"), **fields}


def answer(status: int = 200, body: Any = None, **headers: str) -> Handler:
    return lambda request: httpx.Response(status, json=job_json() if body is None else body,
                                          headers=headers)


def refuse(exc: type[httpx.TransportError] = httpx.ConnectError) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("scripted failure", request=request)
    return handler


class Script:
    """Answers request n with handler n; keeps every request."""

    def __init__(self, *handlers: Handler) -> None:
        self.handlers = list(handlers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.handlers, f"unexpected request {request.method} {request.url}"
        return self.handlers.pop(0)(request)

    def client(self, policy: RetryPolicy = FAST, **kwargs: Any) -> Client:
        return Client("http://jobs.test", transport=httpx.MockTransport(self),
                      retry_policy=policy, **kwargs)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def sse(*events: tuple[int, str, dict[str, Any]]) -> bytes:
    """The stream text the server sends for these (id, kind, data) events."""
    return b"".join(f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()
                    for seq, kind, data in events)


class Broken(httpx.SyncByteStream):
    """A body that sends `chunks`, then breaks as a dropped connection does."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.RemoteProtocolError("peer closed connection without sending complete "
                                        "message body")
