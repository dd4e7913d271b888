"""`Client`: the blocking Python client, for Flask, Django, scripts and the CLI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import httpx

from scholarsource.client import calls
from scholarsource.client.canvas import Canvas
from scholarsource.client.models import Event, Job, JobPage, Workflow
from scholarsource.client.retry import Attempts, RetryPolicy
from scholarsource.client.session import Session
from scholarsource.client.sse import EventFeed

T = TypeVar("T")


@contextmanager
def _cut_at(deadline: float | None, response: httpx.Response) -> Iterator[None]:
    """Shut the stream's socket down at the deadline, so that a read waiting on a stream
    that still delivers now and then returns at once: its read timeout alone could overrun
    the deadline by as long as the stream has been open. Shutdown, not close: closing a
    socket from another thread does not wake a thread blocked reading it. A transport
    without a socket (httpx.MockTransport, say) is bounded by the read timeout alone."""
    stream = response.extensions.get("network_stream")
    sock = None if stream is None else stream.get_extra_info("socket")
    if deadline is None or sock is None:
        yield
        return
    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), _shutdown, (sock,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed: the stream ended first
        sock.shutdown(socket.SHUT_RDWR)


class Client(Session):
    """A connection pool to one ScholarSource server. Use it as a context manager, or
    `close()` it; one Client serves a whole application, from any thread.

    Args:
        url: the server, as `http://127.0.0.1:8000`.
        api_key: sent as `Authorization: Bearer KEY`; never shown in a repr.
        timeout: seconds for connecting and for each read of an answer.
        retries: how many times a request is sent again after no answer, a 503 or a 429.
        retry_policy: the whole RetryPolicy (backoff, the longest Retry-After to honour),
            instead of `retries`.
        transport: an httpx transport to send through (tests, proxies, mounts).
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, retry_policy: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, api_key, retries, retry_policy)
        self._http = httpx.Client(base_url=self.url, headers=self._headers(), timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def submit(self, task: str, params: Mapping[str, Any] | None = None, *,
               idempotency_key: str | None = None, **options: Any) -> Job:
        """Submit a job of `task`; `options` are the submit body's other fields (queue,
        priority, delay, run_at, max_attempts, timeout, concurrency_key, cache_ttl, unique...).
        A retry sends the same Idempotency-Key (one is made if none is given), so it never
        makes a second job."""
        return self._run(calls.submit(task, params, options, idempotency_key))

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Submit submit bodies (`{"task": ..., "params": ...}`) in one request and one
        transaction: all or none (InvalidRequest's `body["index"]` names the bad one)."""
        return self._run(calls.submit_many(jobs))

    def workflow(self, flow: Canvas | Mapping[str, Any]) -> Workflow:
        """Create a workflow from a canvas (`chain`, `group`, `chord`, `sig`) or a
        {"steps": ...} body, all its steps in one transaction; its id and step job ids."""
        return self._run(calls.workflow(flow))

    def get_workflow(self, workflow_id: str) -> Workflow:
        """The workflow's status, progress and steps; NotFound if this tenant has none."""
        return self._run(calls.get_workflow(workflow_id))

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel every step not yet final (running ones are asked to stop)."""
        return self._run(calls.cancel_workflow(workflow_id))

    def get(self, job_id: str) -> Job:
        """The job; NotFound if this key's tenant has none with that id."""
        return self._run(calls.get(job_id))

    def cancel(self, job_id: str) -> Job:
        """Cancel a waiting job, or ask a running one to stop; Conflict if it had ended."""
        return self._run(calls.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        """Re-queue a retrying, dead or cancelled job with fresh attempts."""
        return self._run(calls.retry(job_id))

    def page(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> JobPage:
        """One page of jobs, newest first; filters: status, task, queue, schedule, search."""
        return self._run(calls.page(cursor, limit, filters))

    def jobs(self, *, page_size: int = 100, **filters: Any) -> Iterator[Job]:
        """Every job that matches `filters` (see `page`), newest first, page after page."""
        cursor = None
        while True:
            answer = self.page(cursor, page_size, **filters)
            yield from answer.jobs
            if answer.next_cursor is None:
                return
            cursor = answer.next_cursor

    def cancel_jobs(self, *, every: bool = False, **filters: Any) -> dict[str, int]:
        """Cancel the jobs that match status, task and queue (or `every=True`)."""
        return self._run(calls.cancel_jobs(filters, every))

    def retry_dead(self) -> dict[str, int]:
        """Re-queue every dead job: `{"retried": n}`."""
        return self._run(calls.retry_dead())

    def purge_dead(self) -> dict[str, int]:
        """Delete every dead job and its history: `{"purged": n}`."""
        return self._run(calls.purge_dead())

    def request(self, method: str, path: str, json: Any = None,
                params: Mapping[str, Any] | None = None) -> Any:
        """Any other API route (schedules, queues, stats), with this client's key, retries
        and errors; returns the answer's JSON."""
        return self._run(calls.request(method, path, json, params))

    def events(self, job_id: str, *, after: int = 0) -> Iterator[Event]:
        """The job's events after event `after` (0: from the start), live until it ends;
        a dropped connection resumes after the last event seen."""
        return self._follow(EventFeed(job_id, after, self.retry_policy, self.url))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final, following its event stream, and return it;
        WaitTimeout (a TimeoutError) after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        feed = EventFeed(job_id, 0, self.retry_policy, self.url, deadline)
        job = self.get(job_id)
        while not job.final:
            for event in self._follow(feed):
                if event.final:
                    break
            job = self.get(job_id)
        return job

    def _follow(self, feed: EventFeed) -> Iterator[Event]:
        while True:
            headers, timeout = feed.connect()
            try:
                with self._http.stream("GET", feed.path, headers=headers,
                                       timeout=timeout) as response:
                    if response.status_code != 200:
                        response.read()
                    wait = feed.opened(response)
                    if wait is None:
                        with _cut_at(feed.deadline, response):
                            for line in response.iter_lines():
                                event = feed.line(line)
                                if event is not None:
                                    yield event
                        # The server closes a stream once the job is final. A close before
                        # the final event (a proxy's; or the job ended before `after`) is
                        # resumed unless the job says it has ended.
                        if feed.ended or self.get(feed.job_id).final:
                            return
                        continue
            except httpx.TransportError as exc:
                wait = feed.dropped(exc)
            time.sleep(wait)

    def _run(self, call: calls.Call[T]) -> T:
        attempts = Attempts(self.retry_policy, self.url, call.resend)
        while True:
            try:
                response = self._http.request(call.method, call.path, json=call.json,
                                              params=call.params, headers=call.headers)
            except httpx.TransportError as exc:
                time.sleep(attempts.after_error(exc))
                continue
            wait = attempts.after_response(response)
            if wait is None:
                return calls.read(call, response)
            time.sleep(wait)
