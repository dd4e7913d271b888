"""`serve` on an address it cannot listen on: one clear message naming --bind, exit 2, and
nothing created (the issue: five seconds of "Connection in use", then "Can't connect to",
after the data directory was made)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scholarsource.bindcheck import check_bindable
from scholarsource.config import Config
from scholarsource.errors import ConfigError
from scholarsource.exitcodes import EXIT_CONFIG


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on, as a forgotten dev server would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_serve_on_a_port_in_use_says_so_and_creates_nothing(taken_port: int,
                                                            tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    run = subprocess.run([sys.executable, "-m", "scholarsource", "serve",
                          "--bind", f"127.0.0.1:{taken_port}", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=30, env=env,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == EXIT_CONFIG, run.stderr
    assert run.stderr == (f"error: address 127.0.0.1:{taken_port} is already in use; "
                          "choose another with --bind\n")
    assert not data_dir.exists()


def test_a_free_port_passes(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check_bindable(Config(bind=f"127.0.0.1:{port}"))  # raises nothing


def test_an_address_of_another_machine_is_named() -> None:
    # 192.0.2.0/24 is reserved for documentation: no machine has it.
    with pytest.raises(ConfigError, match=r"^address 192\.0\.2\.1:8000 is not an address of "
                                          r"this machine; choose another with --bind$"):
        check_bindable(Config(bind="192.0.2.1:8000"))

