"""The data directory's lock: a server holds it exclusive, one-off commands shared."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from scholarsource.datalock import lock_data_dir
from scholarsource.errors import DataDirInUse


def test_a_server_shuts_out_servers_and_one_off_commands_at_once(tmp_path: Path) -> None:
    server = lock_data_dir(tmp_path)
    try:
        began = time.monotonic()
        for shared in (False, True):
            with pytest.raises(DataDirInUse, match="in use by a running server"):
                lock_data_dir(tmp_path, shared=shared)
        assert time.monotonic() - began < 5  # no wait: a server does not go away soon
    finally:
        os.close(server)


def test_one_off_commands_share_it_and_a_server_waits_for_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = lock_data_dir(tmp_path, shared=True)
    second = lock_data_dir(tmp_path, shared=True)  # not taken for a server
    os.close(second)
    # However long the command takes (a migration of a big store: minutes), and saying so.
    threading.Timer(1.5, os.close, (first,)).start()
    with caplog.at_level(logging.WARNING, logger="scholarsource.datalock"):
        server = lock_data_dir(tmp_path)  # waits for the command, then starts
    assert [r.getMessage() for r in caplog.records] == [
        f"data directory {tmp_path} is held by a one-off command (keys create migrating the "
        "store?); waiting for it to finish"]
    try:
        with pytest.raises(DataDirInUse):
            lock_data_dir(tmp_path, shared=True)
    finally:
        os.close(server)
