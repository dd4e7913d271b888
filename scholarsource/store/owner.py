"""Who holds a lease: a pool's owner id, `host/box/boot`.

- host: the machine's name;
- box: a digest of the data directory's real path, so that several servers on one machine,
  each with its own data directory (which its lock makes exclusive), are several boxes;
- boot: fresh at each pool start.

A pool that starts re-queues at once the running jobs of its own box's earlier owners: that
pool died (its master saw it, or the whole server was restarted). Another box's jobs wait
for their lease to expire (store.base: `Store.recover`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket


def box_of(data_dir: str, host: str | None = None) -> str:
    """The prefix every owner id of this box starts with, "host/box/" (the trailing slash:
    one box's prefix never matches a longer one's)."""
    digest = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:12]
    return f"{host or socket.gethostname()}/{digest}/"


def new_owner(data_dir: str) -> str:
    """A new owner id for a pool starting on this box."""
    return box_of(data_dir) + secrets.token_hex(6)
