"""A real server under a stand-in for systemd: READY, WATCHDOG, RELOADING and STOPPING."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.notify_listener import NotifyListener

pytestmark = pytest.mark.e2e


@pytest.fixture
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyListener]:
    sock = NotifyListener(str(tmp_path_factory.mktemp("n") / "notify"))
    yield sock
    sock.close()


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_the_master_tells_systemd_ready_pings_the_watchdog_and_says_it_stops(
        serve, listener: NotifyListener) -> None:
    server = serve(slots=1, wait=False,
                   env={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "2000000"})

    ready = listener.wait_for("READY")
    assert ready["MAINPID"] == str(server.proc.pid)
    # READY comes after the listener is bound and the workers are forked: the API answers.
    assert httpx.get(server.url + "/api/health", timeout=15).json()["version"]
    health = server.wait_healthy()
    assert [m for m in listener.messages if "READY" in m] == [ready]  # Gunicorn's own is gone
    listener.wait_for("WATCHDOG")
    # Only the master may notify (NotifyAccess=main): task code never learns the socket.
    # (Slots are exec'd by the forkserver, so /proc shows their real start-up environment.)
    assert health["processes"]["slots"]
    for pid in health["processes"]["slots"]:
        assert b"NOTIFY_SOCKET" not in _environ(pid)

    server.signal(signal.SIGHUP)
    listener.wait_for("RELOADING")
    assert listener.wait_for("READY")["STATUS"].startswith("reloaded")

    server.signal(signal.SIGTERM)
    listener.wait_for("STOPPING")
    assert server.proc.wait(timeout=30) == 0
