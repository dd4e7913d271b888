"""sd_notify datagrams, the watchdog's pacing, and the unit file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from scholarsource.config import Config
from scholarsource.server import _SHUTDOWN_MARGIN, PoolArbiter
from scholarsource.systemd import Notifier
from tests.notify_listener import NotifyListener

UNIT = Path(__file__).parent.parent / "systemd" / "scholarsource.service"


@pytest.fixture
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyListener]:
    # AF_UNIX paths stop at 108 bytes: a short directory of our own, not tmp_path.
    sock = NotifyListener(str(tmp_path_factory.mktemp("n") / "notify"))
    yield sock
    sock.close()


def test_each_message_is_one_datagram_of_key_value_lines(listener: NotifyListener) -> None:
    notifier = Notifier(listener.address)
    assert notifier.ready("up")
    assert listener.receive(5) == {"READY": "1", "STATUS": "up", "MAINPID": str(os.getpid())}
    assert notifier.stopping()
    assert listener.receive(5) == {"STOPPING": "1"}
    assert notifier.reloading()
    message = listener.receive(5)
    assert message is not None and message["RELOADING"] == "1"
    assert int(message["MONOTONIC_USEC"]) > 0


def test_an_abstract_socket_name_starting_with_at_is_reached() -> None:
    listener = NotifyListener(f"@scholarsource-test-{os.getpid()}")
    try:
        assert Notifier(listener.address).notify("STATUS=abstract")
        assert listener.receive(5) == {"STATUS": "abstract"}
    finally:
        listener.close()


def test_without_a_socket_nothing_is_sent_and_nothing_raises(tmp_path: Path) -> None:
    assert not Notifier(None).ready("up")
    assert not Notifier(None).enabled
    assert not Notifier(str(tmp_path / "nobody-listens")).ready("up")
    assert not Notifier("@" + "x" * 200).stopping()  # longer than any socket name may be
    assert not Notifier("/tmp/a\0b").stopping()


def test_the_environment_is_taken_so_that_children_do_not_inherit_it() -> None:
    env = {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "20000000",
           "WATCHDOG_PID": str(os.getpid()), "OTHER": "kept"}
    notifier = Notifier.from_environment(env)
    assert env == {"OTHER": "kept"}
    assert notifier.address == "/run/n"
    assert notifier.watchdog_interval == 10.0


@pytest.mark.parametrize("env", [
    {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"},
    {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "soon"},
    {"WATCHDOG_USEC": "20000000"},
])
def test_no_watchdog_when_it_is_meant_for_another_process_or_malformed(
        env: dict[str, str]) -> None:
    assert Notifier.from_environment(env).watchdog_interval is None


def test_keepalive_pings_only_when_healthy_and_due(listener: NotifyListener) -> None:
    notifier = Notifier(listener.address, watchdog_usec=3_600_000_000)
    assert not notifier.keepalive(healthy=False)
    assert notifier.keepalive(healthy=True)
    assert listener.receive(5) == {"WATCHDOG": "1"}
    assert not notifier.keepalive(healthy=True)  # the next one is due in half an hour
    assert not Notifier(listener.address).keepalive(healthy=True)  # no WATCHDOG_USEC


def test_the_units_stop_timeout_outlasts_the_graceful_drain() -> None:
    text = UNIT.read_text()
    stop = re.search(r"^TimeoutStopSec=(\d+)$", text, re.M)
    assert stop and int(stop.group(1)) > Config().grace_period + _SHUTDOWN_MARGIN
    for directive in ("Type=notify", "NotifyAccess=main", "KillMode=mixed",
                      "StateDirectory=scholarsource", "Restart=on-failure"):
        assert f"\n{directive}\n" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point a copy at one that does.
    copy = tmp_path / UNIT.name
    copy.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable} -m scholarsource",
                           UNIT.read_text(), flags=re.M))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # unknown keys are only warnings


@pytest.mark.parametrize(("pid", "pulse_age", "started_ago", "checks_in"), [
    (123, 1.0, 500.0, True),        # up, and its pulse is fresh
    (123, 61.0, 500.0, False),      # up, but silent past pool_stall_timeout (60 s)
    (123, None, 10.0, True),        # booting: no pulse yet, within the boot time
    (123, None, 500.0, False),      # "booting" for longer than the master allows
    (0, None, 1.0, False),          # no pool at all: between a death and its respawn
])
def test_the_watchdog_is_fed_only_while_the_pool_checks_in(
        pid: int, pulse_age: float | None, started_ago: float, checks_in: bool) -> None:
    master = SimpleNamespace(dirty_arbiter_pid=pid, config=Config(),
                             pool_pulse_age=lambda: pulse_age,
                             _pool_started=time.monotonic() - started_ago)
    assert PoolArbiter._pool_checks_in(master) is checks_in
