"""The SQLite store's wake-ups (`Store.wake`, `Store.listen`): one datagram per submit or
cancel, from API workers to this data directory's pool.

A hint only cuts latency; the dispatcher polls anyway, so a lost datagram delays a job by at
most `poll_interval`. The socket lives in Linux's abstract namespace: no file to clean up, no
108-byte path limit, and it vanishes with the pool process. One box only: the data directory
names the address.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time

from scholarsource.errors import StoreError
from scholarsource.store.base import Wake

_BIND_RETRY_SECONDS = 5.0


def address(data_dir: str) -> str:
    """The abstract socket name for the pool serving `data_dir`."""
    digest = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:24]
    return f"\0scholarsource-{digest}"


class Listener:
    """The dispatcher's side: a non-blocking receiving socket (a `WakeSource`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    async def bind(cls, data_dir: str) -> Listener:
        """Bind this data directory's address. A pool orphaned by a killed master may hold
        it for up to a second: retry a while before saying another pool serves it."""
        deadline = time.monotonic() + _BIND_RETRY_SECONDS
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(address(data_dir))
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise StoreError("another pool is serving this data directory") from None
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            return cls(sock)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> set[Wake]:
        """Read every pending hint; returns the distinct kinds seen."""
        kinds: set[Wake] = set()
        while True:
            try:
                data = self._sock.recv(16)
            except (BlockingIOError, InterruptedError):
                return kinds
            try:
                kinds.add(Wake(data.decode()))
            except ValueError:
                kinds.add(Wake.SUBMITTED)  # unknown: treat it as the plainest hint

    def close(self) -> None:
        self._sock.close()


class Waker:
    """The API side: sends hints and never blocks or fails the request that sends them."""

    def __init__(self, data_dir: str) -> None:
        self._address = address(data_dir)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def poke(self, kind: Wake) -> None:
        """Send one hint; a full buffer or an absent pool is fine (it polls)."""
        try:
            self._sock.sendto(kind.value.encode(), self._address)
        except OSError:
            pass

    def close(self) -> None:
        """Close the sending socket."""
        self._sock.close()
