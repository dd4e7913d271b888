"""Logging for every ScholarSource process: one plain line per record on stderr."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def setup(level: str = "info") -> None:
    """Send the `scholarsource` loggers to stderr at `level` (idempotent)."""
    logger = logging.getLogger("scholarsource")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_scholarsource", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
        handler._scholarsource = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
