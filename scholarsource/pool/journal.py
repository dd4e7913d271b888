"""What the pool tells operators about each attempt: one log line per state change (logger
`scholarsource.jobs`, fields as keys in the JSON format) and the Prometheus counters. Params
and results are never logged: they may hold secrets.

An attempt's end is recorded once the store has committed it, with the state the store left
the job in, so a stale attempt (fenced out) is neither logged nor counted. Lines are kept
until `flush()` and written together (logs.write_lines), once per turn of the dispatcher: at
thousands of jobs per second, a LogRecord each cost more than the job."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram

from scholarsource import logs
from scholarsource.metrics.counters import JOB_RUN, JOB_WAIT, JOBS_ENDED, JOBS_STARTED
from scholarsource.store.base import Claim, JobState, Outcome

log = logging.getLogger("scholarsource.jobs")


class Journal:
    """Records attempts as they start and end."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # the log lines; the counters always count
        self._lines: list[logs.Line] = []
        # Each task's metric children, found once: labels() costs ~1 us a call, four a job.
        self._started: dict[str, tuple[Counter, Histogram]] = {}
        self._ended: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def started(self, claim: Claim) -> None:
        if (children := self._started.get(claim.task)) is None:
            children = self._started[claim.task] = (JOBS_STARTED.labels(claim.task),
                                                    JOB_WAIT.labels(claim.task))
        started, wait = children
        started.inc()
        wait.observe(max(time.time() - claim.created_at, 0.0))
        if self.enabled:
            self._lines.append((time.time(), logging.INFO, "job running", {
                "job_id": claim.id, "task": claim.task, "queue": claim.queue,
                "attempt": claim.attempt}))

    def ended(self, claim: Claim, outcome: Outcome, ran_for: float, state: JobState) -> None:
        """An attempt's end, committed: `state` is where the store left the job."""
        key = (claim.task, state.value)
        if (children := self._ended.get(key)) is None:
            children = self._ended[key] = (JOBS_ENDED.labels(*key), JOB_RUN.labels(claim.task))
        ended, run = children
        ended.inc()
        run.observe(ran_for)
        if self.enabled:
            self._lines.append((
                time.time(), logging.WARNING if state is JobState.DEAD else logging.INFO,
                f"job {state.value}", {"job_id": claim.id, "task": claim.task, "queue": claim.queue,
                                 "attempt": claim.attempt, "duration": round(ran_for, 6),
                                 "outcome": outcome.ending.value,
                                 "error_code": outcome.error_code, "exit": outcome.exit}))

    def flush(self) -> None:
        """Write the lines kept since the last flush."""
        if self._lines:
            lines, self._lines = self._lines, []
            logs.write_lines(log, lines)
