"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24


class Progress:
    """`start(label, ...)`, then `update(done)` as often as wanted, then `finish()`.

    A phase has a known `total` of operations or a `seconds` length (or neither: then the
    bar shows only the elapsed time). Redraws are limited to ten a second.
    """

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.label = ""
        self.total: int | None = None
        self.seconds: float | None = None
        self.began = self.drawn = 0.0

    def start(self, label: str, *, total: int | None = None,
              seconds: float | None = None) -> None:
        """Begin a phase."""
        self.label, self.total, self.seconds = label, total, seconds
        self.began, self.drawn = time.monotonic(), 0.0
        self.update(0)

    def update(self, done: int) -> None:
        """Redraw with `done` operations finished so far."""
        now = time.monotonic()
        if not self.enabled or now - self.drawn < 0.1:
            return
        self.drawn = now
        elapsed = now - self.began
        if self.total:
            fraction: float | None = done / self.total
        elif self.seconds:
            fraction = elapsed / self.seconds
        else:
            fraction = None
        bar = "" if fraction is None else (
            "[" + "#" * round(min(fraction, 1.0) * _WIDTH)).ljust(_WIDTH + 1) + "] "
        line = f"{self.label:<24} {bar}{elapsed:5.1f}s  {done:,} done"
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        """Clear the line."""
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
