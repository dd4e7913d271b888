"""The Python client against a real server: submit, get, wait over the event stream, every
page of jobs, cancel, retry, the server's errors as exceptions, a submit whose answer was
lost, and the asyncio client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from scholarsource import AsyncClient, Client
from scholarsource.client import Conflict, InvalidRequest, JobState, NotFound, WaitTimeout
from tests.conftest import Server

pytestmark = pytest.mark.e2e


class Recording(httpx.HTTPTransport):
    """A real transport that notes each request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return super().handle_request(request)


class LosesFirstAnswer(httpx.HTTPTransport):
    """The server gets and commits the first submit, but its answer is lost on the way
    back, as when a connection resets after the request was served."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST":
            self.keys.append(request.headers["Idempotency-Key"])
            if len(self.keys) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.mark.both_backends
def test_submit_wait_page_cancel_and_retry(serve: Callable[..., Server]) -> None:
    server = serve(slots=1)
    transport = Recording()
    with Client(server.url, transport=transport) as client:
        job = client.submit("echo", {"n": 1}, priority=5)
        assert (job.task, job.params, job.priority, job.final) == ("echo", {"n": 1}, 5, False)
        assert client.get(job.id).id == job.id

        # wait() follows the event stream: one GET of the job before, one after, no poll.
        slow = client.submit("sleep", {"seconds": 1.0})
        transport.sent.clear()
        done = client.wait(slow.id, timeout=30)
        assert (done.status, done.final) == (JobState.SUCCEEDED, True)
        assert done.result == {"slept": pytest.approx(1.0, abs=0.1)}
        assert transport.sent == [("GET", f"/api/jobs/{slow.id}"),
                                  ("GET", f"/api/jobs/{slow.id}/events"),
                                  ("GET", f"/api/jobs/{slow.id}")]

        # The stream itself: every state in order, ending with the final one.
        events = list(client.events(slow.id))
        states = [e.status for e in events if e.kind == "state"]
        assert states[-2:] == [JobState.RUNNING, JobState.SUCCEEDED]
        assert events[-1].final and [e.id for e in events] == sorted({e.id for e in events})
        assert list(client.events(slow.id, after=events[-1].id)) == []

        # Every page, newest first.
        made = [client.submit("noop").id for _ in range(5)]
        transport.sent.clear()
        listed = [j.id for j in client.jobs(task="noop", page_size=2)]
        assert listed == made[::-1]
        assert transport.sent.count(("GET", "/api/jobs")) == 3

        # Cancel a running job, then retry it; their refusals come as Conflict.
        long = client.submit("sleep", {"seconds": 60})
        assert any(e.status is JobState.RUNNING for e in _until_running(client, long.id))
        asked = client.cancel(long.id)
        assert asked.cancel_requested
        assert client.wait(long.id, timeout=30).status is JobState.CANCELLED
        again = client.retry(long.id)
        assert again.status in (JobState.QUEUED, JobState.RUNNING) and not again.final
        with pytest.raises(Conflict) as not_retryable:
            client.retry(long.id)
        assert not_retryable.value.code == "not_retryable"
        client.cancel(long.id)
        with pytest.raises(Conflict) as ended:
            client.cancel(job.id)
        assert ended.value.code == "already_finished"


def _until_running(client: Client, job_id: str) -> list[object]:
    seen = []
    for event in client.events(job_id):
        seen.append(event)
        if event.status is JobState.RUNNING:
            break
    return seen


@pytest.mark.both_backends
def test_the_servers_errors_arrive_as_exceptions_with_its_codes(
        serve: Callable[..., Server]) -> None:
    server = serve(slots=1)
    with Client(server.url) as client:
        with pytest.raises(NotFound) as missing:
            client.get("no-such-job")
        assert (missing.value.code, missing.value.status) == ("not_found", 404)
        with pytest.raises(InvalidRequest) as unknown:
            client.submit("ecko")
        assert unknown.value.code == "unknown_task" and "'echo'" in unknown.value.message
        with pytest.raises(InvalidRequest) as priority:
            client.submit("noop", priority=5000)
        assert priority.value.body["field"] == "priority"
        with pytest.raises(InvalidRequest) as option:
            client.submit("noop", colour="blue")
        assert option.value.body["field"] == "colour"
        # The sleep job reports progress all along, so the stream never goes quiet: the
        # wait still ends at its deadline, long before the job does.
        slow = client.submit("sleep", {"seconds": 30})
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            client.wait(slow.id, timeout=1)
        assert time.monotonic() - started < 15
        assert not client.get(slow.id).final
        client.cancel(slow.id)
        # Nothing was written for a refused submit: only the sleep job exists.
        assert [job.task for job in client.jobs()] == ["sleep"]


@pytest.mark.both_backends
def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_job(
        serve: Callable[..., Server]) -> None:
    server = serve(slots=1)
    transport = LosesFirstAnswer()
    with Client(server.url, transport=transport) as client:
        job = client.submit("echo", {"order": 42})
        assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
        assert [j.id for j in client.jobs(task="echo")] == [job.id]
        assert job.idempotency_key == transport.keys[0]


@pytest.mark.both_backends
def test_the_async_client(serve: Callable[..., Server]) -> None:
    server = serve(slots=1)

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            jobs = [await client.submit("echo", {"i": i}) for i in range(3)]
            done = await asyncio.gather(*(client.wait(job.id, timeout=30) for job in jobs))
            assert [job.result for job in done] == [{"i": 0}, {"i": 1}, {"i": 2}]
            kinds = [event.kind async for event in client.events(jobs[0].id)]
            assert kinds[0] == "state" and "state" == kinds[-1]
            listed = [job.id async for job in client.jobs(task="echo", page_size=2)]
            assert listed == [job.id for job in reversed(jobs)]
            with pytest.raises(NotFound):
                await client.cancel("no-such-job")
            slow = await client.submit("sleep", {"seconds": 30})
            started = time.monotonic()
            with pytest.raises(WaitTimeout):
                await client.wait(slow.id, timeout=1)
            assert time.monotonic() - started < 15
            await client.cancel(slow.id)

    asyncio.run(main())


@pytest.mark.both_backends
def test_submit_many_is_one_batch_in_order(serve: Callable[..., Server]) -> None:
    server = serve(slots=1)
    with Client(server.url) as client:
        jobs = client.submit_many([{"task": "echo", "params": {"i": i}} for i in range(3)])
        assert [job.params for job in jobs] == [{"i": 0}, {"i": 1}, {"i": 2}]
        with pytest.raises(InvalidRequest) as bad:
            client.submit_many([{"task": "echo"}, {"task": "ecko"}])
        assert bad.value.body["index"] == 1
        assert len(list(client.jobs(task="echo"))) == 3
