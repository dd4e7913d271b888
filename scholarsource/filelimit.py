"""The open-file limit: every connection, and so every open event stream, holds a socket.

Linux starts most processes with a soft limit of 1,024 under a far higher hard one (systemd
gives 524,288), so a server or a bench generator holding a thousand streams would fail to
accept with EMFILE well before the machine minds. Raising the soft limit to the hard one is
what any process may do for itself (Go runtimes do it at start); children inherit it.
"""

from __future__ import annotations

import resource


def raise_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns (before, now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return soft, hard
    return soft, soft
