"""The event stream: parsed as Server-Sent Events, resumed with Last-Event-ID where a
connection broke, and followed by `wait` until the job is final."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from scholarsource.client import AsyncClient, JobState, NotFound, ServerError, WaitTimeout
from scholarsource.client.sse import SseDecoder, SseMessage
from tests.client.fakes import FAST, Broken, Script, answer, job_json, sse

QUEUED = (1, "state", {"job_id": "j1", "at": 1.0, "status": "queued", "final": False})
RUNNING = (2, "state", {"job_id": "j1", "at": 2.0, "status": "running", "final": False})
PROGRESS = (3, "progress", {"job_id": "j1", "at": 3.0, "progress": 0.5})
DONE = (4, "state", {"job_id": "j1", "at": 4.0, "status": "succeeded", "final": True})


def decode(text: str) -> list[SseMessage]:
    decoder = SseDecoder()
    return [m for line in text.split("\n") if (m := decoder.feed(line)) is not None]


def test_the_decoder_follows_the_event_stream_rules() -> None:
    text = (": keep-alive\n\n"            # a comment alone dispatches nothing
            "id: 5\nevent: log\ndata: {\"a\":\ndata: 1}\n\n"  # data lines join with \n
            "data:no space\n\n"          # one leading space is optional; id carries over
            "event: lonely\n\n")         # no data: not dispatched
    assert decode(text) == [SseMessage("5", "log", '{"a":\n1}'),
                            SseMessage("5", "message", "no space")]


def stream(*chunks: bytes, broken: bool = False) -> httpx.Response:
    headers = {"Content-Type": "text/event-stream"}
    if broken:
        return httpx.Response(200, headers=headers, stream=Broken(*chunks))
    return httpx.Response(200, headers=headers, content=b"".join(chunks))


def test_events_resume_after_a_dropped_connection_without_loss_or_repeat() -> None:
    script = Script(lambda r: stream(sse(QUEUED, RUNNING), b"id: 3\nevent: pro", broken=True),
                    lambda r: stream(sse(PROGRESS, DONE)))
    events = list(script.client().events("j1"))
    assert [(e.id, e.kind) for e in events] == [(1, "state"), (2, "state"), (3, "progress"),
                                                (4, "state")]
    assert events[-1].final and events[-1].status is JobState.SUCCEEDED
    assert [r.headers["Last-Event-ID"] for r in script.requests] == ["0", "2"]


def test_a_clean_close_before_the_final_event_is_resumed() -> None:
    # A proxy may end a response cleanly, even one with keep-alives only: the job is asked,
    # and the stream resumed while it has not ended.
    script = Script(lambda r: stream(sse(QUEUED)), answer(200, job_json(status="running")),
                    lambda r: stream(b": keep-alive\n\n"),
                    answer(200, job_json(status="running")), lambda r: stream(sse(DONE)))
    assert [e.id for e in script.client().events("j1")] == [1, 4]
    assert [r.headers.get("Last-Event-ID") for r in script.requests] == [
        "0", None, "1", None, "1"]


def test_a_stream_of_a_job_that_ended_before_after_ends_at_once() -> None:
    script = Script(lambda r: stream(b""), answer(200, job_json(status="succeeded")))
    assert list(script.client().events("j1", after=4)) == []


def test_an_event_that_is_not_the_servers_is_a_server_error() -> None:
    script = Script(lambda r: stream(b"id: 1\nevent: state\ndata: <html>\n\n"))
    with pytest.raises(ServerError, match="not the server's"):
        list(script.client().events("j1"))


def test_events_of_an_unknown_job_raise_not_found() -> None:
    script = Script(answer(404, {"error": "not_found", "message": "no job 'x'"}))
    with pytest.raises(NotFound, match="no job 'x'"):
        list(script.client().events("x"))


def test_wait_follows_the_stream_not_a_poll() -> None:
    script = Script(answer(200, job_json(status="running")),
                    lambda r: stream(sse(QUEUED, RUNNING, PROGRESS, DONE)),
                    answer(200, job_json(status="succeeded", result=7)))
    job = script.client().wait("j1", timeout=5)
    assert (job.status, job.final, job.result) == (JobState.SUCCEEDED, True, 7)
    assert [r.url.path for r in script.requests] == [
        "/api/jobs/j1", "/api/jobs/j1/events", "/api/jobs/j1"]


def test_wait_on_a_final_job_answers_at_once() -> None:
    script = Script(answer(200, job_json(status="dead")))
    assert script.client().wait("j1").status is JobState.DEAD
    assert len(script.requests) == 1


def test_wait_times_out_on_a_quiet_stream() -> None:
    def quiet(request: httpx.Request) -> httpx.Response:
        # As a quiet stream does: no data for the read timeout, which the deadline set.
        read_timeout = request.extensions["timeout"]["read"]
        assert read_timeout <= 0.05
        time.sleep(read_timeout)
        raise httpx.ReadTimeout("no data", request=request)

    script = Script(answer(200, job_json(status="running")), *[quiet] * 50)
    with pytest.raises(WaitTimeout) as caught:
        script.client().wait("j1", timeout=0.05)
    assert isinstance(caught.value, TimeoutError)


def test_the_async_client_resumes_and_waits_the_same_way() -> None:
    class AsyncBroken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield sse(QUEUED, RUNNING)
            raise httpx.ReadError("reset")

    script = Script(answer(200, job_json(status="running")),
                    lambda r: httpx.Response(200, stream=AsyncBroken()),
                    lambda r: stream(sse(PROGRESS, DONE)),
                    answer(200, job_json(status="succeeded")))

    async def main() -> JobState:
        async with AsyncClient("http://jobs.test", transport=httpx.MockTransport(script),
                               retry_policy=FAST) as client:
            return (await client.wait("j1")).status

    assert asyncio.run(main()) is JobState.SUCCEEDED
    assert [r.headers.get("Last-Event-ID") for r in script.requests] == [None, "0", "2", None]
