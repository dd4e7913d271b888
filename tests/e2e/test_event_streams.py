"""Event streams that scale, through a real server: one reader per API worker feeds every
stream it serves (api/fanout.py). Many streams on one worker each get every event of their
job in order, a client resumes with Last-Event-ID, another tenant's job is never streamed,
a stalled client is dropped without holding up the others, and the reader stops with the
last stream."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import submit, wait_finished
from tests.e2e.keyring import KEYS, as_key, make_key
from tests.e2e.test_jobs import _parse_sse
from tests.e2e.test_metrics import scrape
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.both_backends]

STREAMS, JOBS = 200, 4


def _metric(server: Server, name: str) -> float:
    return scrape(server.url).get((name, ()), 0.0)


def _history(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """A finished job's whole event history (its stream, which ends at once)."""
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        return _parse_sse(response.iter_lines())


async def _watch(client: httpx.AsyncClient, job_id: str, opened: asyncio.Event,
                 counter: list[int]) -> list[dict[str, Any]]:
    """One viewer: the job's stream to its end; counts itself open at its first event."""
    lines: list[str] = []
    async with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("id:") and not lines:
                counter[0] += 1
                if counter[0] == STREAMS:
                    opened.set()
            lines.append(line)
    return _parse_sse(lines)


def test_200_streams_on_one_worker_each_get_every_event_in_order_from_one_reader(
        serve, tmp_path: Path) -> None:
    server = serve(slots=JOBS, workers=1)
    client = server.client()
    gate = tmp_path / "gate"
    jobs = [submit(client, "narrate", gate=str(gate), lines=10, pause=0.02)["id"]
            for _ in range(JOBS)]
    reads_before: list[float] = []

    async def viewers() -> list[list[dict[str, Any]]]:
        opened, counter = asyncio.Event(), [0]
        limits = httpx.Limits(max_connections=STREAMS + 10)
        async with httpx.AsyncClient(base_url=server.url, limits=limits,
                                     timeout=httpx.Timeout(30, read=60)) as viewer:
            tasks = [asyncio.ensure_future(_watch(viewer, jobs[i % JOBS], opened, counter))
                     for i in range(STREAMS)]
            await asyncio.wait_for(opened.wait(), 60)
            assert _metric(server, "scholarsource_event_streams") == STREAMS, scrape(server.url)
            reads_before.append(_metric(server, "scholarsource_event_reads_total"))
            gate.touch()  # every stream is open: now the jobs talk
            return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    seen = asyncio.run(viewers())
    # While the jobs talked, one statement per read for all 200 streams: polling them one by
    # one took two statements per stream every 0.25 s, hundreds in any quarter second.
    reads = _metric(server, "scholarsource_event_reads_total") - reads_before[0]
    assert 0 < reads < STREAMS, reads
    histories: dict[str, list[dict[str, Any]]] = {}
    for i, events in enumerate(seen):
        job_id = jobs[i % JOBS]
        history = histories.setdefault(job_id, _history(client, job_id))
        assert [e["id"] for e in events] == [e["id"] for e in history]  # all, in order, once
        assert {e["data"]["job_id"] for e in events} == {job_id}
        assert [e["data"]["message"] for e in events if e["event"] == "log"] == [
            f"line {n} " for n in range(10)]
        assert events[-1]["data"]["status"] == "succeeded"
    wait_until(lambda: _metric(server, "scholarsource_event_streams") == 0,
               message="the streams to close")


def test_a_client_resumes_with_last_event_id_while_the_job_runs(serve, tmp_path: Path) -> None:
    server = serve(slots=1, workers=1)
    client = server.client()
    gate = tmp_path / "gate"
    job_id = submit(client, "narrate", gate=str(gate), lines=6, pause=0.5)["id"]
    first: list[str] = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        gate.touch()
        for line in response.iter_lines():
            first.append(line)
            if line.startswith("data:") and '"line 1 "' in line:
                break  # the client goes away in the middle of the job
    # The server forgets a stream whose client left (its feed is unsubscribed), while the
    # job still has seconds to run.
    wait_until(lambda: _metric(server, "scholarsource_event_streams") == 0,
               message="the left stream to close")
    assert not client.get(f"/api/jobs/{job_id}").json()["final"]
    head = _parse_sse(first + [""])
    with client.stream("GET", f"/api/jobs/{job_id}/events",
                       headers={"Last-Event-ID": head[-1]["id"]}) as response:
        tail = _parse_sse(response.iter_lines())
    history = _history(client, job_id)
    assert [e["id"] for e in head + tail] == [e["id"] for e in history]
    assert tail[-1]["data"]["status"] == "succeeded"


def test_another_tenants_job_is_never_streamed(serve, tmp_path: Path) -> None:
    server = serve(slots=2, workers=1, env=KEYS)
    client = as_key(server, make_key(server, "acme", "submit"))
    other = as_key(server, make_key(server, "globex", "submit"))
    gate = tmp_path / "gate"
    their_id = submit(other, "narrate", gate=str(gate), lines=5)["id"]
    mine = submit(client, "narrate", gate=str(gate), lines=5)["id"]
    answer = client.get(f"/api/jobs/{their_id}/events")
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
    with client.stream("GET", f"/api/jobs/{mine}/events") as response:
        gate.touch()  # both jobs talk at once, to the same reader
        events = _parse_sse(response.iter_lines())
    assert {e["data"]["job_id"] for e in events} == {mine}
    assert events[-1]["data"]["status"] == "succeeded"
    wait_finished(client, mine)
    again = client.get(f"/api/jobs/{their_id}/events", headers={"Last-Event-ID": "0"})
    assert again.status_code == 404


def test_a_stalled_client_is_dropped_and_holds_up_no_one(serve, tmp_path: Path) -> None:
    # Small buffers, and a job whose history is several times what the kernel buffers
    # between the server and a client that reads nothing.
    server = serve(slots=1, workers=1, env={"SCHOLARSOURCE_EVENTS_BUFFER": "50"})
    client = server.client()
    gate = tmp_path / "gate"
    job_id = submit(client, "narrate", gate=str(gate), lines=2000, width=3900)["id"]
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = server.url.removeprefix("http://").split(":")
    stalled.connect((host, int(port)))
    stalled.sendall(f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                    f"Connection: close\r\n\r\n".encode())
    try:
        wait_until(lambda: _metric(server, "scholarsource_event_streams") == 1,
                   message="the stalled stream to open")
        gate.touch()
        # Another client of the same job, on the same worker, gets all of it meanwhile.
        with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
            events = _parse_sse(response.iter_lines())
        assert [int(e["data"]["message"].split()[1]) for e in events
                if e["event"] == "log"] == list(range(2000))
        assert events[-1]["data"]["status"] == "succeeded"
        wait_until(lambda: _metric(server, "scholarsource_event_streams_dropped_total") == 1,
                   timeout=20, message="the stalled stream to be dropped")
        # The stalled client reads at last: its stream ended, and it resumes from its last id.
        received = b""
        while chunk := stalled.recv(1 << 20):
            received += chunk
    finally:
        stalled.close()
    text = received.decode()
    assert ": behind" in text
    ids = [line[4:].strip() for line in text.split("\n") if line.startswith("id: ")]
    with client.stream("GET", f"/api/jobs/{job_id}/events",
                       headers={"Last-Event-ID": ids[-1]}) as response:
        rest = _parse_sse(response.iter_lines())
    assert ids + [e["id"] for e in rest] == [e["id"] for e in events]


def test_the_reader_stops_with_the_last_stream(serve, tmp_path: Path) -> None:
    server = serve(slots=1, workers=1, env={"SCHOLARSOURCE_EVENTS_INTERVAL": "0.02"})
    client = server.client()
    first = submit(client, "narrate", lines=2)["id"]
    assert _history(client, first)[-1]["data"]["status"] == "succeeded"
    wait_until(lambda: _metric(server, "scholarsource_event_streams") == 0,
               message="the stream to close")
    reads = _metric(server, "scholarsource_event_reads_total")
    assert reads > 0
    # A job that runs for over ten reader ticks, with no stream open: no read at all.
    wait_finished(client, submit(client, "narrate", lines=5, pause=0.05)["id"])
    assert _metric(server, "scholarsource_event_reads_total") == reads
    # The next stream starts it again.
    assert _history(client, first)[-1]["data"]["status"] == "succeeded"
    assert _metric(server, "scholarsource_event_reads_total") > reads
