"""Memory as the pool sees it: what each slot's process tree holds, what the box has free,
and what a task is expected to need (declared, learned from its recent runs, or the default).
"""

from __future__ import annotations

import collections
import math

import psutil

# Learned figures come from this many recent runs per task, and need this many to count.
_HISTORY = 20
_MIN_SAMPLES = 3


def available() -> int:
    """Bytes the kernel could give out now without swapping (MemAvailable)."""
    return int(psutil.virtual_memory().available)


def tree_rss(roots: list[int]) -> dict[int, int]:
    """RSS of each root process plus all its descendants (a task may start subprocesses:
    ffmpeg, a browser), bytes. One pass over the process table serves every root; a root
    that is gone is left out."""
    children: dict[int, list[psutil.Process]] = collections.defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info["ppid"]
        if ppid:
            children[ppid].append(proc)
    totals: dict[int, int] = {}
    for root in roots:
        try:
            total = psutil.Process(root).memory_info().rss
        except psutil.Error:
            continue
        stack = list(children.get(root, ()))
        while stack:
            proc = stack.pop()
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue  # ended meanwhile
            stack.extend(children.get(proc.pid, ()))
        totals[root] = total
    return totals


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
