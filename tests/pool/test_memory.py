"""What a job is expected to need, and the retry backoff."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from scholarsource.pool import memory
from scholarsource.pool.dispatcher import backoff
from scholarsource.pool.memory import Expectations, tree_rss
from scholarsource.store.base import Claim

MB = 1024**2


def test_declared_beats_learned_beats_the_default() -> None:
    expect = Expectations(default=512 * MB)
    assert expect.of("pdf") == 512 * MB
    for peak in (100, 120):
        expect.observe("pdf", peak * MB)
    expect.refresh()
    assert expect.of("pdf") == 512 * MB  # too few runs to trust
    for peak in (110, 130, 400):
        expect.observe("pdf", peak * MB)
    assert expect.of("pdf") == 512 * MB  # learned figures change at a refresh
    expect.refresh()
    assert expect.of("pdf") == 400 * MB  # p95 of five: the highest
    for _ in range(20):
        expect.observe("pdf", 100 * MB)
    expect.refresh()
    assert expect.of("pdf") == 100 * MB  # old peaks age out
    expect.declare("pdf", 300 * MB)
    assert expect.of("pdf") == 300 * MB
    assert expect.largest() == 512 * MB  # an unknown task may still come


def test_tree_rss_counts_a_process_and_skips_the_gone() -> None:
    sizes = tree_rss([os.getpid(), 2**22 + 1])
    assert list(sizes) == [os.getpid()] and sizes[os.getpid()] > 10 * MB


@pytest.mark.parametrize("files", [True, False], ids=["proc-children-files", "process-table"])
def test_tree_rss_counts_the_subprocesses_of_a_subprocess(monkeypatch: pytest.MonkeyPatch,
                                                          files: bool) -> None:
    monkeypatch.setattr(memory, "_HAS_CHILDREN_FILES", files)
    # A child that starts a grandchild holding 64 MB, as a task's ffmpeg would.
    hold = ("import sys; b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
            "print('ready', flush=True); sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; "
                           f"subprocess.run([sys.executable, '-c', {hold!r}])"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            alone = psutil.Process(child.pid).memory_info().rss
            assert memory.tree_rss([child.pid])[child.pid] > alone + 60 * MB
        finally:
            child.kill()  # closing its stdin ends the grandchild


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    def claim(failures: int) -> Claim:
        return Claim("j", "t", "{}", failures + 1, 10, None, 1, failures=failures,
                     backoff_base=1.0, backoff_max=5.0)

    for failures, full in ((0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (9, 5.0)):
        delays = [backoff(claim(failures)) for _ in range(200)]
        assert full / 2 <= min(delays) and max(delays) <= full
        assert max(delays) - min(delays) > full / 10  # jittered, not fixed
