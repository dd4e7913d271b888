"""The retry, dead and crash rules, stated once. Every backend's SQL implements them (SQLite:
FINISH and _RECOVER in store/sqlite.py), and the store tests check each backend against these
functions (tests/store/test_rules.py).

- A failed attempt (the task raised, timed out, went over its memory cap...) counts one
  failure. A crashed attempt (its process died) counts one failure and one crash.
- After a failure the job is `dead` once it has failed `max_attempts` times or crashed
  `max_crashes` times; otherwise it is `retrying`, due again at the attempt's `retry_at`.
- A pool that dies (its box's next pool finds its jobs at start) or stops renewing a lease
  (any pool's sweep finds it expired) leaves attempts that did not fail: each is charged one
  crash and no failure, and goes back to `queued` at once, or `dead` once the job has crashed
  `max_crashes` times. When the dead pool named the attempt it was handling as it died (the
  culprit), that attempt alone is charged; the others are re-queued uncharged. A pool's own
  job whose lease expired is never charged: the pool renews every attempt its slots hold,
  so that job's claim never reached a slot (the store failed right after it committed).
- An interrupted attempt (a shutdown past its grace) is charged nothing: `queued` again.
  So is an attempt that a stopping pool could not write back (another process held the
  write lock until the pool gave up or was killed): the pool listed it in pool.handback as
  its stop began (pool/handback.py), and the next pool re-queues it so before its recovery,
  unless it is also the culprit, which is charged: a stopping pool's slots run on, and send,
  during the grace, and a pool that dies taking in an attempt's data died of that data.
"""

from __future__ import annotations

from scholarsource.store.base import Ending, ErrorCode, JobState

# The error of an attempt a stop handed back to the queue (Store.requeue).
SHUTDOWN = ErrorCode.INTERRUPTED.explain("the server shut down")


def after_attempt(ending: Ending, *, failures: int, crashes: int, max_attempts: int,
                  max_crashes: int) -> JobState:
    """The state a job is left in when an attempt ends as `ending`, given the failures and
    crashes it had counted before that attempt."""
    if ending is Ending.INTERRUPTED:
        return JobState.QUEUED
    if ending not in (Ending.FAILED, Ending.CRASHED):
        return JobState(ending.value)  # succeeded, cancelled
    crashed = ending is Ending.CRASHED
    if failures + 1 >= max_attempts or (crashed and crashes + 1 >= max_crashes):
        return JobState.DEAD
    return JobState.RETRYING


def after_lost_pool(*, crashes: int, max_crashes: int, charged: bool) -> JobState:
    """The state a running job is left in when its pool is found dead or its lease expired
    (`Store.recover`), given the crashes it had counted; `charged`: this attempt is charged
    a crash (no culprit was named, or it is the culprit)."""
    if charged and crashes + 1 >= max_crashes:
        return JobState.DEAD
    return JobState.QUEUED


def spared_cause(expired: bool) -> str:
    """The error of an attempt re-queued uncharged by `Store.recover`: with `expired`, a job
    of the recovering pool itself whose claim never reached a slot; else one that ran beside
    the culprit of a dead pool."""
    if expired:
        return ErrorCode.INTERRUPTED.explain("its pool claimed it but never started it")
    return ErrorCode.INTERRUPTED.explain("the pool process died while handling another job")
