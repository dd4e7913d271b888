"""Where the metrics files live: in memory, one directory per server, never on the data disk
(the full-disk end-to-end test in tests/e2e/test_limits.py shows why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scholarsource import metrics
from scholarsource.errors import ConfigError


def test_systemds_runtime_directory_comes_first(tmp_path: Path) -> None:
    env = {"RUNTIME_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b", "XDG_RUNTIME_DIR": "/elsewhere"}
    assert metrics.runtime_directory("data", env) == tmp_path / "a" / "metrics"


def test_one_directory_per_data_directory_under_the_users_runtime_directory() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    one, other = (metrics.runtime_directory(d, env) for d in ("/srv/one", "/srv/other"))
    assert one.parent == other.parent == Path("/run/user/1000") and one != other
    assert metrics.runtime_directory("/srv/one/", env) == one


def test_without_a_runtime_directory_it_is_shared_memory_per_user() -> None:
    path = metrics.runtime_directory("/srv/one", {})
    assert path.parent == metrics.SHARED_MEMORY
    assert path.name.startswith(f"scholarsource-{os.getuid()}-")


def test_use_directory_starts_empty_and_private(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv(metrics.ENV, "")  # use_directory sets it: restored at teardown
    first = metrics.use_directory("/srv/one")
    (first / "counter_1.db").write_bytes(b"old")
    again = metrics.use_directory("/srv/one")
    assert again == first and list(again.iterdir()) == []
    assert again.stat().st_mode & 0o777 == 0o700
    assert os.environ[metrics.ENV] == str(again)


def test_a_link_in_its_place_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv(metrics.ENV, "")  # use_directory sets it: restored at teardown
    target = metrics.runtime_directory("/srv/one")
    (tmp_path / "someone-elses").mkdir()
    target.symlink_to(tmp_path / "someone-elses")
    with pytest.raises(ConfigError, match="cannot create the metrics directory"):
        metrics.use_directory("/srv/one")


def test_serve_imports_no_prometheus_client_before_it_picks_the_directory() -> None:
    """prometheus-client picks multiprocess mode when a metric is made: had `serve`'s own
    imports made them, every counter would live in one process's memory and /metrics would
    lose them all (it did, once: the auth bind check pulled in the event reader's)."""
    probe = ("import sys, scholarsource.cli, scholarsource.server; "
             "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
