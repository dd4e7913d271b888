"""ScholarSource: a job server for one big machine.

The public surface is what task authors need: the `task` decorator, the `Context` their
functions receive, and `Retry` to ask for another attempt.
"""

from scholarsource.errors import Retry
from scholarsource.tasks.context import Context
from scholarsource.tasks.registry import task

__version__ = "0.1.0"

__all__ = ["Context", "Retry", "__version__", "task"]
