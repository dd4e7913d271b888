"""ScholarSource: a job server for one big machine.

The public surface is what task authors need: the `task` decorator and the `Context` their
functions receive.
"""

from scholarsource.tasks.context import Context
from scholarsource.tasks.registry import task

__version__ = "0.1.0"

__all__ = ["Context", "__version__", "task"]
