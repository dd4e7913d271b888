"""`AsyncClient`: the asyncio Python client, for FastAPI, Starlette and other async apps.
Its methods are Client's, awaited; both run the same `calls`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeVar

import httpx

from scholarsource.client import calls
from scholarsource.client.canvas import Canvas
from scholarsource.client.errors import WaitTimeout
from scholarsource.client.models import Event, Job, JobPage, Workflow
from scholarsource.client.retry import Attempts, RetryPolicy
from scholarsource.client.session import Session
from scholarsource.client.sse import EventFeed

T = TypeVar("T")


class AsyncClient(Session):
    """A connection pool to one ScholarSource server, for one event loop; the arguments
    are Client's. Use it as an async context manager, or `await aclose()`."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, retry_policy: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, api_key, retries, retry_policy)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers(),
                                       timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def submit(self, task: str, params: Mapping[str, Any] | None = None, *,
                     idempotency_key: str | None = None, **options: Any) -> Job:
        """See Client.submit."""
        return await self._run(calls.submit(task, params, options, idempotency_key))

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """See Client.submit_many."""
        return await self._run(calls.submit_many(jobs))

    async def workflow(self, flow: Canvas | Mapping[str, Any]) -> Workflow:
        """See Client.workflow."""
        return await self._run(calls.workflow(flow))

    async def get_workflow(self, workflow_id: str) -> Workflow:
        """See Client.get_workflow."""
        return await self._run(calls.get_workflow(workflow_id))

    async def cancel_workflow(self, workflow_id: str) -> Workflow:
        """See Client.cancel_workflow."""
        return await self._run(calls.cancel_workflow(workflow_id))

    async def get(self, job_id: str) -> Job:
        """See Client.get."""
        return await self._run(calls.get(job_id))

    async def cancel(self, job_id: str) -> Job:
        """See Client.cancel."""
        return await self._run(calls.cancel(job_id))

    async def retry(self, job_id: str) -> Job:
        """See Client.retry."""
        return await self._run(calls.retry(job_id))

    async def page(self, cursor: str | None = None, limit: int = 50,
                   **filters: Any) -> JobPage:
        """See Client.page."""
        return await self._run(calls.page(cursor, limit, filters))

    async def jobs(self, *, page_size: int = 100, **filters: Any) -> AsyncIterator[Job]:
        """See Client.jobs: `async for job in client.jobs(status="dead")`."""
        cursor = None
        while True:
            answer = await self.page(cursor, page_size, **filters)
            for job in answer.jobs:
                yield job
            if answer.next_cursor is None:
                return
            cursor = answer.next_cursor

    async def cancel_jobs(self, *, every: bool = False, **filters: Any) -> dict[str, int]:
        """See Client.cancel_jobs."""
        return await self._run(calls.cancel_jobs(filters, every))

    async def retry_dead(self) -> dict[str, int]:
        """See Client.retry_dead."""
        return await self._run(calls.retry_dead())

    async def purge_dead(self) -> dict[str, int]:
        """See Client.purge_dead."""
        return await self._run(calls.purge_dead())

    async def request(self, method: str, path: str, json: Any = None,
                      params: Mapping[str, Any] | None = None) -> Any:
        """See Client.request."""
        return await self._run(calls.request(method, path, json, params))

    def events(self, job_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """See Client.events: `async for event in client.events(job_id)`."""
        return self._follow(EventFeed(job_id, after, self.retry_policy, self.url))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """See Client.wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        feed = EventFeed(job_id, 0, self.retry_policy, self.url, deadline)
        try:
            # Cancels a read on a stream that still delivers now and then, which the read
            # timeout alone would let overrun the deadline.
            async with asyncio.timeout(timeout):
                job = await self.get(job_id)
                while not job.final:
                    async for event in self._follow(feed):
                        if event.final:
                            break
                    job = await self.get(job_id)
        except WaitTimeout:
            raise
        except TimeoutError:
            raise WaitTimeout(f"job {job_id} did not end in time") from None
        return job

    async def _follow(self, feed: EventFeed) -> AsyncIterator[Event]:
        while True:
            headers, timeout = feed.connect()
            try:
                async with self._http.stream("GET", feed.path, headers=headers,
                                             timeout=timeout) as response:
                    if response.status_code != 200:
                        await response.aread()
                    wait = feed.opened(response)
                    if wait is None:
                        async for line in response.aiter_lines():
                            event = feed.line(line)
                            if event is not None:
                                yield event
                        # The server closes a stream once the job is final. A close before
                        # the final event (a proxy's; or the job ended before `after`) is
                        # resumed unless the job says it has ended.
                        if feed.ended or (await self.get(feed.job_id)).final:
                            return
                        continue
            except httpx.TransportError as exc:
                wait = feed.dropped(exc)
            await asyncio.sleep(wait)

    async def _run(self, call: calls.Call[T]) -> T:
        attempts = Attempts(self.retry_policy, self.url, call.resend)
        while True:
            try:
                response = await self._http.request(call.method, call.path, json=call.json,
                                                    params=call.params, headers=call.headers)
            except httpx.TransportError as exc:
                await asyncio.sleep(attempts.after_error(exc))
                continue
            wait = attempts.after_response(response)
            if wait is None:
                return calls.read(call, response)
            await asyncio.sleep(wait)
