"""ScholarSource: a job server for one big machine.

The public surface is what task authors need: the `task` decorator, the `Context` their
functions receive, and `Retry` to ask for another attempt; and what web apps need to hand it
jobs: `Client` and `AsyncClient` (more in `scholarsource.client`).
"""

from typing import TYPE_CHECKING, Any

from scholarsource.errors import Retry
from scholarsource.tasks.context import Context
from scholarsource.tasks.registry import task

if TYPE_CHECKING:
    from scholarsource.client import AsyncClient, Client

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "Context", "Retry", "__version__", "task"]


def __getattr__(name: str) -> Any:
    # The clients load on first use: every slot process imports this package for `task`,
    # and need not pay for httpx (~10 MB, ~100 ms) it never calls.
    if name in ("Client", "AsyncClient"):
        from scholarsource import client

        return getattr(client, name)
    raise AttributeError(f"module 'scholarsource' has no attribute {name!r}")
