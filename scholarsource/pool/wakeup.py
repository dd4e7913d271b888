"""Wake-up hints from API workers to the dispatcher: one datagram per submit or cancel.

A hint only cuts latency; the dispatcher polls anyway, so a lost datagram delays a job by at
most `poll_interval`. The socket lives in Linux's abstract namespace: no file to clean up, no
108-byte path limit, and it vanishes with the pool process.
"""

from __future__ import annotations

import hashlib
import os
import socket

SUBMITTED = b"s"
CANCELLED = b"c"
SCHEDULED = b"t"  # a delayed job was submitted: it may be due before the next known one


def address(data_dir: str) -> str:
    """The abstract socket name for the pool serving `data_dir`."""
    digest = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:24]
    return f"\0scholarsource-{digest}"


def listen(data_dir: str) -> socket.socket:
    """Bind the dispatcher's non-blocking receiving socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address(data_dir))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> set[bytes]:
    """Read every pending hint; returns the distinct kinds seen."""
    kinds: set[bytes] = set()
    while True:
        try:
            kinds.add(sock.recv(16))
        except (BlockingIOError, InterruptedError):
            return kinds


class Waker:
    """The API side: sends hints and never blocks or fails the request that sends them."""

    def __init__(self, data_dir: str) -> None:
        self._address = address(data_dir)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def poke(self, kind: bytes = SUBMITTED) -> None:
        """Send one hint; a full buffer or an absent pool is fine (it polls)."""
        try:
            self._sock.sendto(kind, self._address)
        except OSError:
            pass

    def close(self) -> None:
        """Close the sending socket."""
        self._sock.close()
