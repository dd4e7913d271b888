"""Memory as the pool sees it: what each slot's process tree holds, what the box has free,
and what a task is expected to need (declared, learned from its recent runs, or the default).
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Callable

import psutil

# Learned figures come from this many recent runs per task, and need this many to count.
_HISTORY = 20
_MIN_SAMPLES = 3


def available() -> int:
    """Bytes the kernel could give out now without swapping (MemAvailable)."""
    return int(psutil.virtual_memory().available)


def tree_rss(roots: list[int]) -> dict[int, int]:
    """RSS of each root process plus all its descendants (a task may start subprocesses:
    ffmpeg, a browser), bytes; a root that is gone is left out."""
    children = _children_files if _HAS_CHILDREN_FILES else _children_table()
    totals: dict[int, int] = {}
    for root in roots:
        try:
            total = psutil.Process(root).memory_info().rss
        except psutil.Error:
            continue
        stack = children(root)
        while stack:
            pid = stack.pop()
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue  # ended meanwhile
            stack.extend(children(pid))
        totals[root] = total
    return totals


def _children_files(pid: int) -> list[int]:
    """The children of `pid`, from each of its threads' /proc children file: a few reads for
    a slot, where a pass over the process table reads every process on the box (~5 ms four
    times a second with 120 processes, ~12 us per no-op job on 2 slots)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found  # gone
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                found += [int(child) for child in file.read().split()]
        except OSError:
            continue  # that thread ended
    return found


def _children_table() -> Callable[[int], list[int]]:
    """Children by parent from one pass over the process table: for kernels built without
    the /proc children files (CONFIG_PROC_CHILDREN)."""
    table: dict[int, list[int]] = collections.defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        if ppid := proc.info["ppid"]:
            table[ppid].append(proc.pid)
    return lambda pid: list(table.get(pid, ()))


_HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


class Expectations:
    """What one job of each task is expected to need, bytes.

    Peaks are recorded as attempts end; the learned figures are recomputed by `refresh()`
    (the dispatcher calls it once a second), so the per-job path is only dict lookups."""

    def __init__(self, default: int) -> None:
        self.default = default
        self._declared: dict[str, int] = {}
        self._learned: dict[str, int] = {}
        self._largest = default
        self._peaks: dict[str, collections.deque[int]] = collections.defaultdict(
            lambda: collections.deque(maxlen=_HISTORY))

    def declare(self, task: str, memory: int | None) -> None:
        """The task's own `memory=`, which wins over anything learned."""
        if memory is not None:
            self._declared[task] = memory
            self.refresh()

    def observe(self, task: str, peak_rss: int) -> None:
        """Record the peak RSS of one finished attempt."""
        self._peaks[task].append(peak_rss)

    def refresh(self) -> None:
        """Recompute each task's p95 from its recent peaks."""
        for task, peaks in self._peaks.items():
            if len(peaks) >= _MIN_SAMPLES:
                ordered = sorted(peaks)
                self._learned[task] = ordered[math.ceil(0.95 * len(ordered)) - 1]
        known = [self.of(task) for task in {*self._declared, *self._learned}]
        self._largest = max([self.default, *known])

    def of(self, task: str) -> int:
        """Declared, else the p95 of the recent peaks, else the configured default."""
        return self._declared.get(task) or self._learned.get(task) or self.default

    def largest(self) -> int:
        """An upper bound over every task this pool knows (for the fast path)."""
        return self._largest
