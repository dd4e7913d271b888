"""The dispatcher: claim one job per free slot, run it, record how it ended.

One asyncio loop in the pool process. Each turn it (1) keeps house: timeouts, cancels,
memory caps, recycling, retries that are due, leases and the heartbeat, (2) writes progress,
then the finished attempts and a claim of as many jobs as there are free slots and free
memory (no prefetch: a long job never holds back a queued one) as one batch of the store
(one SQLite transaction), and (3) sleeps until a wake-up hint, a finished attempt, or the
next deadline. Correctness never depends on hints.

A slot's process that dies is noticed at once (its executor's future fails), so the attempt
ends within the turn, never after a lease: leases only cover the death of the pool itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import random
import select
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import psutil

from scholarsource.config import Config, format_size
from scholarsource.errors import StoreUnavailable
from scholarsource.pool import memory
from scholarsource.pool.admission import Admission
from scholarsource.pool.artifacts import Files, received, well_formed
from scholarsource.pool.children import Children
from scholarsource.pool.handback import Handback
from scholarsource.pool.journal import Journal
from scholarsource.pool.messages import Ended, Report, Spawned
from scholarsource.pool.policy import Policy
from scholarsource.pool.retention import Pruner
from scholarsource.pool.scheduler import Scheduler
from scholarsource.pool.slots import Slot, Slots
from scholarsource.pool.suspect import Suspect
from scholarsource.quotas import QuotaPolicy
from scholarsource.store.base import (
    Claim,
    Ending,
    ErrorCode,
    JobState,
    Note,
    Outcome,
    PoolInfo,
    Store,
    TaskDefaults,
    Wake,
)
from scholarsource.store.rules import SHUTDOWN
from scholarsource.tasks.jsontext import printable, to_json

log = logging.getLogger("scholarsource.pool")

HEARTBEAT_INTERVAL = 1.0
# How often busy slots' memory is sampled (caps, peaks, admission).
MEMORY_INTERVAL = 0.25
_STORE_RETRY = 0.2
# Messages of a burst (children, progress, logs) taken per read of a slot's pipe.
_BURST = 256
# What multiprocessing's Connection.recv_bytes raises for a message over its maxlength.
_TOO_LONG = "bad message length"
# Room in a slot's message beyond its result: the error text and traceback it may carry.
_MESSAGE_HEADROOM = 1024**2
_MAX_ERROR_CHARS = 4000
# What a drain waits for (scheduled jobs do not hold it).
_DRAIN_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)


def backoff(claim: Claim) -> float:
    """Seconds before the next attempt: doubling from backoff_base up to backoff_max, with
    "equal jitter" (between half and all of it) so that jobs that failed together do not all
    come back together."""
    delay = min(claim.backoff_max, claim.backoff_base * 2.0 ** claim.failures)
    return delay / 2 + random.uniform(0, delay / 2)


def slot_rows(slots: Slots) -> list[dict[str, Any]]:
    """What each slot runs now, for the heartbeat (the dashboard's slots view): from what
    the slot knows, plus its process's CPU time so far (the page turns two into a rate)."""
    now, mono = time.time(), time.monotonic()
    rows = []
    for slot in slots.all:
        claim = slot.claim
        rows.append({"slot": slot.index, "pid": slot.pid,
                     "job_id": claim.id if claim else None,
                     "task": claim.task if claim else None,
                     "started_at": round(now - (mono - slot.started), 3) if claim else None,
                     "rss": slot.rss, "cpu_seconds": _cpu_seconds(slot.pid)})
    return rows


def _cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU time of one process so far (None: unknown or gone)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return round(times.user + times.system, 3)


class Dispatcher:
    """Feeds slots from the store and reports back; `run()` returns once stopped and idle."""

    def __init__(self, config: Config, store: Store, slots: Slots, owner: str,
                 master_pid: int | None = None, expect: memory.Expectations | None = None,
                 alive: Callable[[], None] = lambda: None,
                 suspect: Suspect | None = None, rate_limited: bool = False,
                 tasks: Mapping[str, TaskDefaults] | None = None,
                 handback: Handback | None = None) -> None:
        self.config = config
        self.store = store
        self.slots = slots
        self.owner = owner
        self.master_pid = master_pid
        self.expect = expect or memory.Expectations(config.memory_per_job)
        self.journal = Journal(config.job_log)
        self.suspect = suspect or Suspect.in_dir(config.data_dir)
        self.handback = handback or Handback.in_dir(config.data_dir)
        self._max_message = config.max_result_bytes + _MESSAGE_HEADROOM
        self._alive = alive  # tells the master this loop still turns (see server.py)
        self.admission = Admission(config.memory_reserve, self.expect, slots)
        self.policy = Policy(config.queues, self.admission, rate_limited, config.tenants)
        self.files = Files.of(config)
        self.retention = Pruner(config.retention, self.files)
        self.scheduler = Scheduler(config)
        self._next_sample = 0.0
        # Wall clock: when the next scheduled or retrying job is due (None: none waits).
        self._next_due: float | None = 0.0
        self._next_promote = 0.0  # monotonic: the polling fallback for due jobs
        self._wake = asyncio.Event()
        self._outcomes: list[Outcome] = []
        # Slots whose pipe a turn read (_take_late): the loop may still hold its readiness.
        self._read_early: set[Slot] = set()
        # What the journal needs of each outcome once it is committed: its claim, run time.
        self._ran: dict[tuple[str, int], tuple[Claim, float]] = {}
        self._notes: list[Note] = []
        self.children = Children(config, tasks or {})  # ctx.submit's, batched like notes
        self._quota = QuotaPolicy(config.tenants, config.max_queued)  # children count too
        self._interrupted: list[tuple[str, int]] = []  # (job id, token) to re-queue
        self._check_cancels = True
        self._stop_at: float | None = None
        self._next_beat = 0.0
        self._next_renew = 0.0
        self._closing = False
        # The attempt a step is moving out of its slot: its claim cleared there, not yet in
        # _ran or _interrupted. A stop signal's handler may run right then (_held).
        self._taking: Claim | None = None

    # -- events from outside the loop's turn ------------------------------------------------
    def hint(self, kinds: set[Wake]) -> None:
        """Wake-ups arrived (Store.listen)."""
        if Wake.CANCELLED in kinds:
            self._check_cancels = True
        if Wake.SCHEDULED in kinds:
            # A delayed job may be due before the time this loop sleeps to: promote now,
            # which also says when the next one is due.
            self._next_due = 0.0
        if kinds == {Wake.SUBMITTED} and not self.slots.free():
            return  # no slot to run it: the next attempt's end wakes the loop, and claims
        self._wake.set()

    def stop(self, grace: float) -> None:
        """Stop claiming; running attempts get `grace` seconds, then go back to the queue."""
        deadline = time.monotonic() + grace
        if self._stop_at is None or deadline < self._stop_at:
            log.info("pool stopping: %d running job(s), %.0fs grace",
                     len(self.slots.busy()), grace)
            self._stop_at = deadline
        # Now, not when the grace is over: a store that keeps the loop waiting (another
        # process holds SQLite's lock) may keep it waiting until the master kills the pool.
        self.handback.keep(self._held())
        self._wake.set()

    def signalled(self) -> None:
        """A stop signal came (the handler itself, between two bytecodes of whatever runs):
        list what this pool hands back now. The stop proper waits for the loop."""
        self.handback.keep(self._held(), reentrant=True)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until stop() was called and every slot is idle or the grace has passed."""
        for slot in self.slots.all:
            self._attach(slot)
        try:
            await self._turns()
        finally:
            self._closing = True
            for slot in self.slots.all:
                self._detach(slot)
        await self._flush()
        if held := self._held():
            log.warning("%d attempt(s) not written back: the next start re-queues them "
                        "uncharged (pool.handback)", len(held))
        self.handback.keep(held)

    async def _turns(self) -> None:
        while True:
            self._wake.clear()
            await self._requeue_interrupted()
            if self._leaving():
                break
            await self._housekeeping()  # first: it queues the jobs that are due
            await self._write(claim=self._stop_at is None)
            if self._stop_at is not None and time.monotonic() >= self._stop_at:
                await self._requeue_running()
                break
            # A timer that sets the same event: cheaper per turn than asyncio.wait_for.
            timer = asyncio.get_running_loop().call_later(self._sleep_for(), self._wake.set)
            await self._wake.wait()
            timer.cancel()

    async def drain(self) -> None:
        """Run until the queue is empty and every slot idle, then return (tests, bench)."""
        runner = asyncio.ensure_future(self.run())
        while True:
            await asyncio.sleep(0.02)
            if self.slots.busy():
                continue  # its job is running in the store too: not done, and no query
            # Per queue and live state, each from its own partial index: `counts()` walks
            # every job ever kept (50 times a second, it was a fifth of a bench drain's CPU).
            counts = await self.store.queue_counts(None)
            if not any(states.get(state, 0) for states in counts.values()
                       for state in _DRAIN_STATES):
                break
        self.stop(0)
        await runner

    def _sleep_for(self) -> float:
        wait = self.config.poll_interval
        busy = self.slots.busy()
        deadlines = [s.deadline for s in busy if s.deadline]
        deadlines += [s.cancel_at for s in busy if s.cancel_at]
        deadlines += [s.kill_at for s in self.slots.all if s.kill_at]
        if busy:
            deadlines.append(self._next_sample)
        if self._stop_at is not None:
            deadlines.append(self._stop_at)
        deadlines.append(self._next_renew)  # on time, whatever the heartbeat's pace
        for due in (self._next_due, self.policy.retry_at):
            if due is not None:
                deadlines.append(time.monotonic() + due - time.time())
        deadlines += self.scheduler.deadlines()  # wake for the next fire, not by polling
        if deadlines:
            wait = min(wait, max(min(deadlines) - time.monotonic(), 0.01))
        return wait

    async def _flush(self) -> None:
        """Write what is left: progress, logs, finished attempts (the last turn)."""
        await self._requeue_interrupted()
        await self._write(claim=False)

    async def _requeue_interrupted(self) -> None:
        self.journal.flush()
        if self._interrupted:
            self.handback.keep(self._held())  # first: the write may wait until a kill
            try:
                await self.store.requeue(self._interrupted, SHUTDOWN)
                self._interrupted = []
            except StoreUnavailable as exc:  # kept for the next turn, or the next pool
                log.warning("cannot re-queue interrupted jobs yet: %s", exc)

    async def _write(self, claim: bool) -> None:
        """Write progress, the children running attempts submitted and finished attempts,
        then (with `claim`) claim jobs for the free slots and start them. The children, the
        results and the claim are one batch of the store (on SQLite one transaction: one
        commit per turn, not two). What the store cannot take now is kept for the next turn
        (a child written twice is the same row: its id is derived, store/fanout.py)."""
        if claim:
            self._poll_slots()  # what ended since the loop last looked: this turn writes it
        notes, spawns, outcomes = self._notes, self.children.pending, self._outcomes
        # No job starts while the artifacts' budget or disk is spent (pool/artifacts.py).
        free = self.slots.free() if claim and not self.files.full else []
        # What runs, as the store will see it at the claim: taken now with `free`. A slot
        # whose attempt ends while this turn awaits the store is free only after its
        # outcome is written, next turn; counted as free at once, its queue's cap let a
        # second job start while the store still showed the first running.
        running = [s.claim for s in self.slots.busy() if s.claim]
        if not notes and not spawns and not outcomes and not free:
            return
        self._notes, self.children.pending, self._outcomes = [], [], []
        states: dict[str, JobState] = {}
        claims: list[Claim] = []
        refused: StoreUnavailable | None = None
        committed: list[Outcome] = []  # finished, where the batch is not one transaction
        try:
            if notes:  # on their own: a log line written twice would show twice
                await self.store.note(notes)
                notes = []
            async with self.store.batch():
                if spawns:  # before the outcomes: a parent's end fences out its later children
                    await self.store.spawn(spawns, self._quota)
                if outcomes:
                    states = await self.store.finish(outcomes, self.config.max_crashes)
                    committed = outcomes
                if free and (late := self._take_late()):
                    ended, freed = late
                    outcomes = [*outcomes, *ended]  # first: a refusal keeps them for next turn
                    states |= await self.store.finish(ended, self.config.max_crashes)
                    committed = outcomes
                    free = [*free, *freed]
                    # Still running as the store sees it: the slots' and the endings kept.
                    running = [s.claim for s in self.slots.busy() if s.claim] + [
                        self._ran[(o.job_id, o.token)][0] for o in self._outcomes]
                if outcomes:
                    if any(outcome.artifacts for outcome in outcomes):
                        # The budget with these files, before this turn's claim: read in
                        # the batch, it counts them (and on PostgreSQL, whose batch is no
                        # transaction, a job submitted meanwhile is not claimed past it).
                        await self.files.refresh(self.store)
                        free = [] if self.files.full else free
                if free:
                    try:
                        claims = await self.policy.claim(
                            self.store, self.owner, len(free), self.config.lease_seconds,
                            running)
                        refused = self.policy.failed  # some claimed: start them all the same
                    except StoreUnavailable as exc:  # the results are written all the same
                        refused = exc
        except StoreUnavailable as exc:
            if committed and not self.store.atomic_batch:  # PostgreSQL: those are written
                self._written(committed, states)
                done = {id(o) for o in committed}
                outcomes = [o for o in outcomes if id(o) not in done]
            log.warning("store unavailable, will retry writing %d result(s): %s",
                        len(outcomes), exc)
            self._notes[:0], self._outcomes[:0] = notes, outcomes
            self.children.pending[:0] = spawns
            await asyncio.sleep(_STORE_RETRY)
            return
        self._written(outcomes, states)
        if refused is not None:
            log.warning("cannot claim jobs: %s", refused)
            await asyncio.sleep(_STORE_RETRY)
        for slot, claimed in zip(free, claims, strict=False):
            self._start(slot, claimed)

    def _poll_slots(self) -> list[tuple[Slot, list[Outcome]]]:
        """Read the busy slots whose pipes hold something, as the loop would once it looked:
        each with the endings it brought. The turn that called it takes what they brought:
        they wake the loop for no other turn."""
        woken = self._wake.is_set()
        busy = [(slot, slot.conn.fileno()) for slot in self.slots.busy() if slot.conn]
        # One poll(2) for all the pipes: Connection.poll() costs ~3 us each (a selector).
        poller = select.poll()
        for _, fd in busy:
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(0)}
        read = []
        for slot, fd in busy:
            if fd in ready:  # so the read below cannot block
                before = len(self._outcomes)
                self._read_early.discard(slot)  # known readable: _read need not look
                self._read(slot)
                self._read_early.add(slot)
                read.append((slot, self._outcomes[before:]))
        # A slot whose process retires is replaced by the next turn's housekeeping: keep
        # the wake-up for it.
        if read and not woken and not any(slot.retire for slot, _ in read):
            self._wake.clear()
        return read

    def _take_late(self) -> tuple[list[Outcome], list[Slot]] | None:
        """The attempts that ended while this turn waited on the store, taken in before its
        claim with the slots they free, so that those slots get their next jobs in this turn
        rather than the next. With every slot busy on short jobs, a turn otherwise wrote one
        ending: the other slots' came in while it ran. An ending with a progress or log line
        or a child of its attempt still unwritten is kept for the next turn, which writes
        those first, and so is its slot."""
        read = self._poll_slots()
        unwritten = {note.job_id for note in self._notes}
        unwritten.update(spawn.parent_id for spawn in self.children.pending)
        late: list[Outcome] = []
        freed = []
        for slot, ended in read:
            if ended and not any(o.job_id in unwritten for o in ended):
                late += ended
                if not slot.busy and not slot.retire:
                    freed.append(slot)
        taken = {id(o) for o in late}
        self._outcomes = [o for o in self._outcomes if id(o) not in taken]
        if self._outcomes or self._notes or self.children.pending:
            self._wake.set()  # what this turn keeps: the next one writes it
        return (late, freed) if late else None

    def _written(self, outcomes: list[Outcome], states: dict[str, JobState]) -> None:
        """Finished attempts are committed: tell operators, and when the next retry is due."""
        for outcome in outcomes:
            claim, ran_for = self._ran.pop((outcome.job_id, outcome.token))
            if (state := states.get(outcome.job_id)) is not None:
                self.journal.ended(claim, outcome, ran_for, state)
            if outcome.artifacts and state is not None and state is not JobState.SUCCEEDED:
                self.files.discard(claim)
            # No state: stale, or written by an earlier try whose answer was lost; the sweep
            # (periodic, and at start) asks the store which attempts' files to keep
            # (kept_attempts), so leave them.
        due = [o.retry_at for o in outcomes
               if o.retry_at is not None and states.get(o.job_id) is JobState.RETRYING]
        if due:
            self._next_due = min(due if self._next_due is None else [*due, self._next_due])
            if self._next_due <= time.time():
                self._wake.set()  # due now (Retry(after=0)): the next turn queues it

    def _start(self, slot: Slot, claim: Claim) -> None:
        self.suspect.mark(claim)
        expected = self.expect.of(claim.task)
        try:
            slot.run(claim, expected)
        except OSError:
            # The idle process is gone and its death not yet reported: replace it now.
            self._replace(slot)
            slot.run(claim, expected)
        finally:
            self.suspect.clear()
        self.journal.started(claim)

    def _completed(self, slot: Slot, ended: Ended) -> None:
        """A slot reported the end of an attempt."""
        self._taking = slot.claim
        claim = slot.complete(ended.token, self.config.max_jobs_per_slot)
        if claim is None:
            self._taking = None  # the slot kept its attempt, if any: no step is under way
            return  # already handed back to the queue (shutdown)
        peak = max(ended.peak or 0, slot.peak_rss or 0) or None
        if peak is not None:
            self.expect.observe(claim.task, peak)
        code, value, cpu = ended.code, ended.value, ended.cpu
        if slot.cancel_at is not None:
            # What a task returns once cancelled (partial work, say) is the job's result;
            # its files are not kept, nor a continuation, which a cancelled job does not get.
            if ended.artifacts:
                self.files.discard(claim)
            outcome = Outcome(claim.id, claim.token, Ending.CANCELLED,
                              error_code=ErrorCode.CANCELLED, error=ErrorCode.CANCELLED,
                              peak_rss=peak, cpu_time=cpu,
                              result_json=value if code is None and ended.then is None
                              else None)
        elif code is None:
            try:
                then = None if ended.then is None else self.children.continuation(
                    claim, ended.then)
            except ValueError as exc:
                code = ErrorCode.BAD_MESSAGE
                outcome = self._failure(claim, code, code.explain(str(exc)[:_MAX_ERROR_CHARS]),
                                        peak=peak, cpu=cpu)
                if ended.artifacts:
                    self.files.discard(claim)
            else:
                outcome = Outcome(claim.id, claim.token, Ending.SUCCEEDED, result_json=value,
                                  peak_rss=peak, cpu_time=cpu, then=then,
                                  artifacts=received(claim, ended.artifacts))
        elif code is ErrorCode.RETRY:
            outcome = self._failure(claim, code, f"retry requested: {value}", peak=peak,
                                    cpu=cpu, after=ended.after)
        else:
            outcome = self._failure(claim, code, value, ended.detail, peak=peak, cpu=cpu)
        self._record(slot, claim, outcome)

    def _ended(self, slot: Slot, life: Future[None]) -> None:
        """A slot's process ended: stopped on purpose (cancel, timeout, memory cap), or not."""
        if slot.life is not life or self._closing:
            return  # stopped or replaced on purpose, or the pool is on its way out
        self._read(slot, rest=True)  # a result sent just before the end still counts
        self._taking = slot.claim
        claim = slot.release()
        if claim is not None:
            peak, reason = slot.peak_rss, slot.stop_reason
            outcome: Outcome | None
            if reason is ErrorCode.CANCELLED or slot.cancel_at is not None:
                outcome = Outcome(claim.id, claim.token, Ending.CANCELLED,
                                  error_code=ErrorCode.CANCELLED, error=ErrorCode.CANCELLED,
                                  peak_rss=peak)
            elif reason is ErrorCode.TIMEOUT:
                outcome = self._failure(claim, reason, reason.explain(
                    f"still running after {claim.timeout:g}s"), peak=peak)
            elif reason is ErrorCode.MEMORY_LIMIT:
                outcome = self._failure(claim, reason, reason.explain(
                    f"its processes used {format_size(slot.rss or 0)}, over the limit of "
                    f"{format_size(claim.memory_limit or 0)}"), peak=peak)
            elif self._stop_at is not None:
                # The pool is stopping, and whatever stopped it (a signal to the whole
                # process group, say) may have reached this process too: the attempt is
                # interrupted, as the shutdown would have done, and not charged.
                log.warning("job %s (%s): its process ended while the pool was stopping (%s); "
                            "re-queueing it", claim.id, claim.task, slot.exit_status())
                self._interrupted.append((claim.id, claim.token))
                self._taking = None
                self._wake.set()
                outcome = None
            else:
                exit_status = slot.exit_status()
                rss = "unknown" if slot.rss is None else format_size(slot.rss)
                code = ErrorCode.WORKER_DIED
                outcome = self._failure(
                    claim, code, code.explain(f"the job's process ended unexpectedly "
                                              f"({exit_status}; RSS last seen {rss})"),
                    repr(life.exception()), peak=peak, crashed=True, exit=exit_status)
            if outcome is not None:
                self.files.discard(claim)  # what a stopped attempt wrote is not kept
                self._record(slot, claim, outcome)
        elif slot.stop_reason is None:
            log.warning("slot %d (pid %s) died while idle (%s); replacing it", slot.index,
                        slot.pid, slot.exit_status())
        self._replace(slot)

    def _record(self, slot: Slot, claim: Claim, outcome: Outcome) -> None:
        """Queue the outcome for the next write, and tell operators."""
        self.children.forget(claim)
        self._outcomes.append(outcome)
        self._ran[(claim.id, claim.token)] = (claim, time.monotonic() - slot.started)
        self._taking = None
        self._wake.set()

    def _failure(self, claim: Claim, code: ErrorCode, message: str | None,
                 detail: str | None = None, *, peak: int | None = None,
                 cpu: float | None = None, after: float | None = None,
                 crashed: bool = False, exit: str | None = None) -> Outcome:
        """A failed attempt, with when the next one may start (used only if one is left)."""
        delay = backoff(claim) if after is None else max(after, 0.0)
        return Outcome(claim.id, claim.token, Ending.CRASHED if crashed else Ending.FAILED,
                       error_code=code, error=message, error_detail=detail,
                       retry_at=time.time() + delay, exit=exit, peak_rss=peak, cpu_time=cpu)

    # -- slot plumbing ----------------------------------------------------------------------
    def _attach(self, slot: Slot) -> None:
        assert slot.conn is not None and slot.life is not None
        loop = asyncio.get_running_loop()
        loop.add_reader(slot.conn.fileno(), self._read, slot)
        life = slot.life
        # From the executor's thread onto the loop: one hop, no asyncio.Future.
        life.add_done_callback(lambda _: loop.call_soon_threadsafe(self._ended, slot, life))

    def _detach(self, slot: Slot) -> None:
        if slot.conn is not None:
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())

    def _replace(self, slot: Slot) -> None:
        self._detach(slot)
        slot.replace()
        self._attach(slot)

    def _read(self, slot: Slot, rest: bool = False) -> None:
        """Take what a slot sent: progress and log lines, children, and ended attempts.
        Called as its pipe is readable: an ended attempt alone (the loop calls again while
        more wait: cheaper than a poll to look, ~3.5 us), but what comes in bursts (children,
        progress, logs) up to _BURST messages, so that one turn writes them together (one
        at a time, a fan-out of 10,000 children took a turn, and a store write, each); with
        `rest`, all that the pipe holds.

        What a slot sends is its job's data: a message the pool cannot take (too large,
        malformed, not JSON) fails that job's attempt alone and stops its process."""
        conn = slot.conn
        if slot in self._read_early:  # a turn took what made the pipe readable: look first
            self._read_early.discard(slot)
            if not rest and conn is not None and not conn.poll():
                return
        self.suspect.mark(slot.claim)
        try:
            taken = 0
            while conn is not None and ((taken == 0 and not rest) or conn.poll()):
                message = pickle.loads(conn.recv_bytes(self._max_message))
                self._take(slot, message)
                taken += 1
                if not rest and (type(message) is Ended or taken >= _BURST):
                    break
        except EOFError:
            self._detach(slot)  # the process died; `life` reports the death
        except OSError as exc:
            if str(exc) == _TOO_LONG:
                self._refuse(slot, ErrorCode.MESSAGE_TOO_LARGE, f"the job's process sent a "
                             f"message over {format_size(self._max_message)}")
            else:  # it died mid-message
                self._detach(slot)
        except Exception as exc:
            self._refuse(slot, ErrorCode.BAD_MESSAGE, f"the job's process sent what the pool "
                         f"cannot take ({type(exc).__name__}: {exc})")
        finally:
            self.suspect.clear()
        if self._notes or self.children.pending:
            self._wake.set()

    def _take(self, slot: Slot, message: Any) -> None:
        # Exact types: a subclass from task code could override what the checks read.
        if type(message) is Report:
            job_id, token, kind, data = message
            if kind not in ("progress", "log") or not isinstance(data, dict):
                raise ValueError(f"a note of kind {kind!r:.40}")
            to_json([job_id, token, data])  # or NotJson: every note kept must be writable
            self._notes.append(Note(job_id, token, kind, data))
        elif type(message) is Spawned:
            if slot.claim is not None:
                self.children.take(slot.claim, message)
        elif type(message) is Ended:
            if not (isinstance(message.code, ErrorCode | None)
                    and isinstance(message.value, str | None)
                    and isinstance(message.detail, str | None)
                    and isinstance(message.after, float | None)
                    and isinstance(message.peak, int | None)
                    and isinstance(message.cpu, float | int)
                    and well_formed(message.artifacts)
                    and isinstance(message.then, str | None)):
                raise ValueError("a malformed end of attempt")
            self._completed(slot, message)
        else:
            raise ValueError(f"a message of type {type(message).__name__:.40}")

    def _refuse(self, slot: Slot, code: ErrorCode, text: str) -> None:
        """Fail the attempt whose process sent what the pool cannot take, and kill that
        process: its pipe may still hold the rest of the message."""
        self._detach(slot)
        message = printable(code.explain(text)[:_MAX_ERROR_CHARS])
        self._taking = slot.claim
        claim = slot.release()
        if claim is not None:
            log.warning("job %s (%s): %s", claim.id, claim.task, message)
            self.files.discard(claim)
            self._record(slot, claim, self._failure(claim, code, message))
        slot.terminate(code, 0)

    def _leaving(self) -> bool:
        """Stopping with nothing running: no duty is left, and each store call would wait
        out the store's connect timeout when the database is gone."""
        return self._stop_at is not None and not self.slots.busy()

    # -- periodic duties --------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        now = time.monotonic()
        self._enforce(now)
        if now >= self._next_sample and (self.slots.busy() or now >= self._next_beat):
            self._next_sample = now + MEMORY_INTERVAL
            self._sample_memory()
        if self._check_cancels or now >= self._next_beat:
            self._check_cancels = False
            try:
                for job_id, token in await self.store.cancel_requested(self.owner):
                    for slot in self.slots.busy():
                        if slot.claim is not None and slot.claim.id == job_id:
                            slot.request_cancel(token, self.config.cancel_grace)
            except StoreUnavailable as exc:
                log.warning("cannot read cancel requests: %s", exc)
        if self._leaving():  # a stop came while the store kept this turn waiting
            return
        # Due at _next_due, or polled as every job is (a submit's wake-up hint may be lost).
        if self._next_due is not None and time.time() >= self._next_due or \
                now >= self._next_promote:
            self._next_promote = now + self.config.poll_interval
            try:
                self._next_due = await self.store.promote()
            except StoreUnavailable as exc:
                log.warning("cannot queue the scheduled and retrying jobs that are due: %s",
                            exc)
                # Try again with the heartbeat, not on every turn: a refusing store would
                # otherwise turn the loop into a spin that floods the log.
                self._next_due = time.time() + HEARTBEAT_INTERVAL
                self._next_promote = now + HEARTBEAT_INTERVAL
            if self._leaving():
                return
        if now >= self._next_renew:
            await self._renew(now)
            if self._leaving():
                return
        if now >= self._next_beat:
            self._next_beat = now + HEARTBEAT_INTERVAL
            self._alive()
            self.expect.refresh()
            if self.master_pid is not None and os.getppid() != self.master_pid:
                log.error("the master (pid %s) is gone; stopping the pool", self.master_pid)
                self.stop(0)
            await self._beat()
            if self._leaving():
                return
        if self.retention.due(now):
            await self.retention.run(self.store)
        await self.files.sweeper.step(self.store, now)  # a lost answer's files, if any
        if self.scheduler.due():
            await self.scheduler.run(self.store)

    def _enforce(self, now: float) -> None:
        """Stop what must stop (timeouts, ignored cancels), finish stops that TERM did not,
        and recycle idle slots marked for it."""
        for slot in self.slots.all:
            if slot.busy:
                if slot.deadline and now >= slot.deadline:
                    slot.terminate(ErrorCode.TIMEOUT, self.config.kill_grace)
                elif slot.cancel_at and now >= slot.cancel_at:
                    slot.terminate(ErrorCode.CANCELLED, 0)
            if slot.kill_at and now >= slot.kill_at:
                slot.kill()
            if slot.retire and not slot.busy and slot.stop_reason is None:
                self._replace(slot)

    def _sample_memory(self) -> None:
        """RSS of every slot's process tree: caps, peaks, leaks."""
        sizes = memory.tree_rss(self.slots.pids())
        self.admission.sampled()
        for slot in self.slots.all:
            if slot.pid is None or slot.pid not in sizes:
                continue
            rss = sizes[slot.pid]
            slot.sample(rss)
            claim = slot.claim
            if claim is not None:
                if claim.memory_limit and rss > claim.memory_limit:
                    log.warning("job %s (%s) is over its memory limit (%s > %s); "
                                "killing its process", claim.id, claim.task, format_size(rss),
                                format_size(claim.memory_limit))
                    slot.terminate(ErrorCode.MEMORY_LIMIT, 0)
            elif self.config.max_slot_memory and rss > self.config.max_slot_memory:
                slot.recycle()

    def _held(self) -> list[tuple[str, int]]:
        """(job id, token) of the attempts this pool answers for: those its slots run, and
        those that ended or were interrupted but are not written back yet."""
        running = [s.claim for s in self.slots.all if s.claim is not None]
        if self._taking is not None:  # listed twice or stale, a pair changes nothing more
            running.append(self._taking)
        return list(dict.fromkeys([*((c.id, c.token) for c in running), *self._ran,
                                   *self._interrupted]))

    async def _renew(self, now: float) -> None:
        """Every lease_seconds / 3: renew the leases this pool holds, then re-queue the
        running jobs whose lease ran out, whoever owns them: another pool's (it hung, or
        its box died) or this pool's own that no slot holds (a claim committed whose answer
        was lost: renewing every job of this owner kept those running until a restart)."""
        try:
            await self.store.renew(self.owner, self._held(), self.config.lease_seconds)
            self._next_renew = now + self.config.lease_seconds / 3
            if recovered := await self.store.recover(
                    self.owner, max_crashes=self.config.max_crashes):
                log.warning("re-queued %d job(s) whose lease expired", recovered)
        except StoreUnavailable as exc:
            log.warning("cannot renew leases: %s", exc)
            # Again soon, but not on every turn: a refusing store would make the loop spin.
            self._next_renew = now + min(HEARTBEAT_INTERVAL, self.config.lease_seconds / 3)

    async def _beat(self) -> None:
        try:
            await self.files.refresh(self.store)
            await self.store.heartbeat(PoolInfo(
                pid=os.getpid(), slots=self.slots.pids(), slot_count=len(self.slots.all),
                busy=len(self.slots.busy()), heartbeat_at=time.time(),
                admission={**self.admission.state, **self.files.state},
                slot_rows=slot_rows(self.slots),
                owner=self.owner))
            # A weight set with `scholarsource tenants set` applies within a heartbeat.
            self.policy.use_tenants(await self.store.tenant_limits(self.config.tenants))
        except StoreUnavailable as exc:
            log.warning("cannot heartbeat: %s", exc)

    async def _requeue_running(self) -> None:
        """The grace is over: stop what still runs and hand it back to the queue."""
        count = len(self._interrupted)
        for slot in self.slots.busy():
            if (claim := slot.claim) is not None:
                self._interrupted.append((claim.id, claim.token))  # first: see _held
                slot.release()
                self.children.forget(claim)
            slot.kill()
        log.warning("re-queueing %d unfinished job(s): %s", len(self._interrupted) - count,
                    SHUTDOWN)
        await self._requeue_interrupted()  # or the last flush, or the next pool's start
