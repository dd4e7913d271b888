"""Request heads through a real server: the reproductions of issue 10 §3 (endless, huge and
slow headers) and the limits that answer them (max_header_bytes, max_headers,
header_timeout)."""

from __future__ import annotations

import json
import re
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import psutil
import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

MB = 1024**2
ENDLESS_HEAD = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: "


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def answer(raw: bytes) -> tuple[int, dict[str, object]]:
    """Status and JSON body of a raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/json" in head.lower(), raw[:300]
    return int(head.split()[1]), json.loads(body)


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_one_answer(sock: socket.socket) -> bytes:
    """The head of one whole answer on a kept-alive connection (its body read and dropped)."""
    sock.settimeout(10.0)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        body += sock.recv(65536)
    return head


def endless_header(port: int, stop: threading.Event, answers: list[bytes]) -> None:
    """One attacker: a header that never ends, 64 KiB at a time; when the server answers,
    keep the answer and start again on a new connection."""
    chunk = b"a" * 65536
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(ENDLESS_HEAD)
            try:
                while not stop.is_set():
                    sock.sendall(chunk)
                    if select.select([sock], [], [], 0)[0]:
                        answers.append(read_answer(sock))
                        break
            except OSError:
                answers.append(b"")  # closed without an answer


@contextmanager
def flood(port: int, attackers: int = 4) -> Iterator[list[bytes]]:
    answers: list[bytes] = []
    stop = threading.Event()
    threads = [threading.Thread(target=endless_header, args=(port, stop, answers), daemon=True)
               for _ in range(attackers)]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def rss(pids: list[int]) -> int:
    return max(psutil.Process(pid).memory_info().rss for pid in pids)


def submit_latencies(client: httpx.Client, count: int, rss_of: list[int],
                     peaks: list[int]) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        response = client.post("/api/jobs", json={"task": "noop"})
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 202, response.text
        if i % 25 == 0:
            peaks.append(rss(rss_of))
    return latencies


def percentiles(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms"


def test_endless_headers_are_cut_off_and_submits_keep_working(serve) -> None:
    server = serve(slots=1, workers=2)
    client = server.client()
    workers = server.health()["processes"]["api"]
    quiet = submit_latencies(client, 300, workers, [])
    before = rss(workers)
    peaks: list[int] = []
    with flood(port_of(server.url)) as answers:
        wait_until(lambda: len(answers) >= 4, 30, message="the server to answer the flood")
        loaded = submit_latencies(client, 300, workers, peaks)
        refused = len(answers)
    after = rss(workers)
    print(f"\nsubmits alone: {percentiles(quiet)}; under 4 endless headers: "
          f"{percentiles(loaded)}; worker RSS before {before / MB:.1f} MiB, peak "
          f"{max(peaks) / MB:.1f} MiB, after {after / MB:.1f} MiB; {refused} heads refused")
    assert all(answer(raw) == (431, {"error": "headers_too_large",
                                     "message": "the request head is over 32768 bytes"})
               for raw in answers[:4]), answers[:4]
    assert max(peaks + [after]) - before < 32 * MB  # it grew by ~470 MB without the limit
    assert max(loaded) < 5.0  # submits timed out (30 s) once Gunicorn killed the workers
    assert server.health()["processes"]["api"] == workers  # none was killed
    assert " was sent " not in server.log() and "WORKER TIMEOUT" not in server.log()


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        return read_answer(sock)


def test_a_huge_header_too_many_headers_or_a_huge_request_line_get_a_json_error(
        serve) -> None:
    server = serve(slots=1)
    client = server.client()
    port = port_of(server.url)
    huge = client.get("/api/health", headers={"X-Big": "a" * MB})
    assert (huge.status_code, huge.json()["error"]) == (431, "headers_too_large")
    many = client.get("/api/health", headers=[(f"X-H{i}", "1") for i in range(2000)])
    assert (many.status_code, many.json()["error"]) == (431, "headers_too_large")
    assert many.json()["message"] == "the request has over 100 headers"
    long_url = client.get("/api/jobs/" + "a" * 40_000)
    assert (long_url.status_code, long_url.json()["error"]) == (414, "request_line_too_long")
    garbage = answer(raw_request(port, b"GET / HTTP/1.1\r\nHost x\r\n\r\n"))
    assert garbage[0] == 400 and garbage[1]["error"] == "malformed_http"
    # Within the limits all is as before: big but allowed heads, and a body well past the
    # head limit sent in the same write as its head.
    assert client.get("/api/health", headers={"X-Big": "a" * 30_000}).status_code == 200
    assert client.get("/api/health",
                      headers=[(f"X-H{i}", "1") for i in range(90)]).status_code == 200
    body = json.dumps({"task": "echo", "params": {"pad": "x" * 900_000}}).encode()
    head = (f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    assert raw_request(port, head + body).startswith(b"HTTP/1.1 202 ")
    metrics = client.get("/metrics").text
    assert 'scholarsource_rejected_requests_total{reason="headers_too_large"} 2.0' in metrics


def test_heads_that_never_finish_are_closed_after_header_timeout(serve) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_HEADER_TIMEOUT": "1"})
    port = port_of(server.url)
    with ExitStack() as stack:
        slow = []
        for i in range(500):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            if i % 2:  # half send part of a head, half send nothing at all
                sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        status, body = answer(read_answer(slow[1]))
        assert (status, body["error"]) == (408, "header_timeout")
        assert read_answer(slow[0]) == b""  # it sent nothing: closed without an answer
        closed = [read_answer(sock) for sock in slow]  # each read ends when it is closed
        assert {raw[:13] for raw in closed} == {b"", b"HTTP/1.1 408 "}
        # A head that arrives in time, byte by byte, is served.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for byte in b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n":
                sock.send(bytes([byte]))
            assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
    # The deadline is for heads only: a response that outlasts it (the event stream of a job
    # that runs 2.5 s) is left alone.
    client = server.client()
    job = client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 2.5}}).json()
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        last = [line for line in stream.iter_lines() if line.startswith("data: ")][-1]
    assert json.loads(last.removeprefix("data: "))["status"] == "succeeded"
    assert client.get("/api/health").status_code == 200


def test_each_head_on_a_kept_alive_connection_gets_its_own_deadline(serve) -> None:
    # One timer serves a connection and checks the head's deadline when it fires: a second
    # request's head, started late, must get its full header_timeout, not what was left of
    # the first one's.
    server = serve(slots=1, env={"SCHOLARSOURCE_HEADER_TIMEOUT": "2"})
    with socket.create_connection(("127.0.0.1", port_of(server.url))) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_one_answer(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)  # the first deadline (2 s after the connection) passes below
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):  # alive past the first deadline: its own applies
            sock.recv(65536)
        status, body = answer(read_answer(sock))
        assert (status, body["error"]) == (408, "header_timeout")
