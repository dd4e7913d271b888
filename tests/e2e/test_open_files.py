"""A server started under a low open-file limit raises it for all its processes: each open
event stream holds a socket, and 1,024 (a common default) is a few hundred viewers."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-file limit for {pid}")


def test_serve_raises_the_open_file_limit_to_the_hard_one(serve) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the server inherits it
    try:
        server = serve(slots=1, workers=2)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    processes = server.health()["processes"]
    for pid in [processes["master"], *processes["api"], processes["pool"]]:
        assert _soft_limit(pid) == hard
    assert "open files: limit raised from 256" in server.log_path.read_text()
