"""`ctx`, the first argument of every task: who am I, report progress, should I stop, where do
my result files go?"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

from scholarsource.artifacts import attempt_dir, check_name
from scholarsource.errors import ChildRefused
from scholarsource.tasks.fanout import Continuation, Fanout
from scholarsource.tasks.jsontext import printable

# Progress from a tight loop would flood the store; between two reports we keep at most
# this many seconds of silence, and the last report of a job always goes through.
_PROGRESS_INTERVAL = 0.05
_MAX_LOG_CHARS = 4000


class CancelFlag(Protocol):
    """Shared memory the dispatcher writes a token into to ask that attempt to stop."""

    value: int


class Context:
    """What a running task knows and can report. Created by the slot, one per attempt."""

    def __init__(self, job_id: str, attempt: int, token: int,
                 report: Callable[[str, dict[str, Any]], None] | None,
                 cancel_flag: CancelFlag | None, artifacts_root: Path | None = None,
                 parent_artifacts: dict[str, dict[str, Path]] | None = None,
                 parent_results: dict[str, Any] | None = None,
                 fanout: Fanout | None = None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        # The results of the jobs this one depends on, by id ({} without parents; a parent
        # that ended without succeeding, for an on_parent_failure = "run" job, has None).
        self.parent_results: dict[str, Any] = parent_results or {}
        self._token = token
        self._report = report
        self._fanout = fanout
        self._cancel_flag = cancel_flag
        self._last_progress = 0.0
        self._artifacts_root = artifacts_root
        # Set by the first ctx.artifact(): the slot then settles the files (pool/artifacts.py).
        self.artifacts_dir: Path | None = None
        # Each parent job's artifacts, name -> path (Store.artifacts_of, artifacts.paths).
        self.parent_artifacts: dict[str, dict[str, Path]] = parent_artifacts or {}

    def artifact(self, name: str) -> Path:
        """A path to write one result file to: once the attempt succeeds, each file written
        this way is one of the job's `artifacts` (the API serves it); a failed attempt's are
        deleted. `name` is a file name alone: no directories, no "..", no control characters
        (ValueError otherwise)."""
        check_name(name)
        if self._artifacts_root is None:
            raise RuntimeError("this context has no artifacts directory")
        if self.artifacts_dir is None:
            directory = attempt_dir(self._artifacts_root, self.job_id, self.attempt)
            # A directory of this attempt number left by an earlier run (an operator's retry
            # restarts the count) is not this attempt's.
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            self.artifacts_dir = directory
        return self.artifacts_dir / name

    @property
    def cancel_requested(self) -> bool:
        """True once a client asked to cancel this job; stop soon and return or raise."""
        return self._cancel_flag is not None and self._cancel_flag.value == self._token

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress, 0.0 to 1.0, with an optional message (long ones are cut).

        Raises ValueError for a fraction that is not a finite number: no client could read
        NaN back. A message is kept as text, any lone surrogate in it escaped."""
        fraction = float(fraction)
        if not math.isfinite(fraction):
            raise ValueError(f"progress must be a finite number, not {fraction}")
        fraction = min(max(fraction, 0.0), 1.0)
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < _PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self._send("progress", {"fraction": fraction,
                                "message": None if message is None else _text(message)})

    def log(self, message: str) -> None:
        """Add a line to the job's event log (long lines are cut; any lone surrogate is
        escaped, as in progress messages)."""
        self._send("log", {"message": _text(message)})

    def submit(self, task: str, params: dict[str, Any] | None = None, **options: Any) -> str:
        """Submit a child job in this job's tenant and workflow (the options of a submit:
        queue, priority, max_attempts, timeout, depends_on among its siblings...); returns
        its id at once. Raises ChildRefused for what a submit would refuse (an unknown
        task, a bad option). The n-th submit of every attempt names the same child, so a
        retry does not double them (tasks/fanout.py)."""
        return self._fanouts().submit(task, params, options)

    def continue_with(self, task: str, params: dict[str, Any] | None = None, *,
                      after: Collection[str] = (), **options: Any) -> Continuation:
        """Return this from the task: the job ends now (its result `{"continued_by": id}`),
        freeing its slot, and job `id` runs once every child in `after` has ended, with
        their results in its ctx.parent_results."""
        return self._fanouts().continue_with(task, params, after, options)

    def _fanouts(self) -> Fanout:
        if self._fanout is None:
            raise ChildRefused("this context submits no jobs (it runs outside a pool)")
        return self._fanout

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        if self._report is not None:
            self._report(kind, data)


def _text(message: object) -> str:
    return printable(str(message)[:_MAX_LOG_CHARS])
