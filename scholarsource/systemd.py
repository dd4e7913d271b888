"""Tell systemd how the server is doing: READY, RELOADING, STOPPING and WATCHDOG pings.

The sd_notify protocol is one datagram per message, newline-separated `KEY=value` lines, sent
to the AF_UNIX socket systemd names in $NOTIFY_SOCKET (a name starting with '@' is in the
abstract namespace). Outside systemd the variable is unset and every call does nothing.
Telling systemd is never worth crashing the server for, so sending never raises.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("scholarsource.systemd")

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends sd_notify messages to one socket; does nothing when there is none."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        # systemd asks for a ping at least every WATCHDOG_USEC; half of it leaves room for
        # one late turn of the master's loop.
        self.watchdog_interval = watchdog_usec / 2e6 if address and watchdog_usec else None
        self._next_ping = 0.0

    @classmethod
    def from_environment(cls, env: MutableMapping[str, str] | None = None) -> Notifier:
        """Take the notify socket and watchdog settings out of `env` (os.environ): children
        must not inherit them, since only the main process may notify (NotifyAccess=main);
        and Gunicorn's own READY=1, sent before the pool is up, then goes nowhere."""
        env = os.environ if env is None else env
        address, usec, pid = (env.pop(name, None) for name in _VARIABLES)
        for_us = pid is None or pid == str(os.getpid())
        try:
            watchdog = int(usec) if usec and for_us else None
        except ValueError:
            watchdog = None
        return cls(address or None, watchdog)

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening."""
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one message; returns whether it was sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, bad text
            log.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """READY=1: start-up (or a reload) is complete."""
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        """RELOADING=1, with the timestamp systemd 253+ wants beside it."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.notify("STOPPING=1")

    def keepalive(self, healthy: bool) -> bool:
        """WATCHDOG=1 when systemd wants pings, one is due, and the caller vouches for its
        health; systemd restarts the service when they stop coming. Call it often."""
        now = time.monotonic()
        if self.watchdog_interval is None or not healthy or now < self._next_ping:
            return False
        self._next_ping = now + self.watchdog_interval
        return self.notify("WATCHDOG=1")
