"""The dispatcher: claim one job per free slot, run it, record how it ended.

One asyncio loop in the pool process. Each turn it (1) writes finished attempts and progress
in batched transactions, (2) claims exactly as many jobs as there are free slots (no
prefetch: a long job never holds back a queued one), and (3) sleeps until a wake-up hint, a
finished attempt, or the fallback poll interval. Correctness never depends on hints.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from concurrent.futures import Future

from scholarsource.config import Config
from scholarsource.errors import StoreUnavailable
from scholarsource.pool import wakeup
from scholarsource.pool.slots import NOTE, Slot, Slots
from scholarsource.store.base import Claim, Note, Outcome, PoolInfo, Store

log = logging.getLogger("scholarsource.pool")

HEARTBEAT_INTERVAL = 1.0
_STORE_RETRY = 0.2


class Dispatcher:
    """Feeds slots from the store and reports back; `run()` returns once stopped and idle."""

    def __init__(self, config: Config, store: Store, slots: Slots, owner: str,
                 master_pid: int | None = None) -> None:
        self.config = config
        self.store = store
        self.slots = slots
        self.owner = owner
        self.master_pid = master_pid
        self._wake = asyncio.Event()
        self._outcomes: list[Outcome] = []
        self._notes: list[Note] = []
        self._check_cancels = True
        self._stop_at: float | None = None
        self._next_beat = 0.0
        self._next_renew = 0.0
        self._closing = False

    # -- events from outside the loop's turn ------------------------------------------------
    def hint(self, kinds: set[bytes]) -> None:
        """A wake-up datagram arrived (see pool.wakeup)."""
        if wakeup.CANCELLED in kinds:
            self._check_cancels = True
        self._wake.set()

    def stop(self, grace: float) -> None:
        """Stop claiming; running attempts get `grace` seconds, then go back to the queue."""
        deadline = time.monotonic() + grace
        if self._stop_at is None or deadline < self._stop_at:
            log.info("pool stopping: %d running job(s), %.0fs grace",
                     len(self.slots.busy()), grace)
            self._stop_at = deadline
        self._wake.set()

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

    async def _turns(self) -> None:
        while True:
            self._wake.clear()
            await self._flush()
            await self._housekeeping()
            if self._stop_at is not None:
                if not self.slots.busy():
                    break
                if time.monotonic() >= self._stop_at:
                    await self._requeue_running("interrupted: the server shut down")
                    break
            else:
                await self._claim()
            # A timer that sets the same event: cheaper per turn than asyncio.wait_for.
            timer = asyncio.get_running_loop().call_later(self._sleep_for(), self._wake.set)
            await self._wake.wait()
            timer.cancel()

    async def drain(self) -> None:
        """Run until the queue is empty and every slot idle, then return (tests, bench)."""
        runner = asyncio.ensure_future(self.run())
        while True:
            await asyncio.sleep(0.02)
            counts = await self.store.counts()
            if counts["queued"] == 0 and counts["running"] == 0:
                break
        self.stop(0)
        await runner

    def _sleep_for(self) -> float:
        wait = self.config.poll_interval
        deadlines = [s.deadline for s in self.slots.busy() if s.deadline]
        deadlines += [s.cancel_at for s in self.slots.busy() if s.cancel_at]
        if self._stop_at is not None:
            deadlines.append(self._stop_at)
        if deadlines:
            wait = min(wait, max(min(deadlines) - time.monotonic(), 0.01))
        return wait

    async def _flush(self) -> None:
        """Write progress, logs and finished attempts; keep them for a retry if the store
        cannot take them now."""
        notes, outcomes = self._notes, self._outcomes
        if not notes and not outcomes:
            return
        self._notes, self._outcomes = [], []
        try:
            if notes:
                await self.store.note(notes)
                notes = []
            if outcomes:
                await self.store.finish(outcomes)
        except StoreUnavailable as exc:
            log.warning("store unavailable, will retry writing %d result(s): %s",
                        len(outcomes), exc)
            self._notes[:0], self._outcomes[:0] = notes, outcomes
            await asyncio.sleep(_STORE_RETRY)

    async def _claim(self) -> None:
        free = self.slots.free()
        if not free:
            return
        try:
            claims = await self.store.claim(self.owner, len(free), self.config.lease_seconds)
        except StoreUnavailable as exc:
            log.warning("cannot claim jobs: %s", exc)
            await asyncio.sleep(_STORE_RETRY)
            return
        for slot, claim in zip(free, claims, strict=False):
            self._start(slot, claim)

    def _start(self, slot: Slot, claim: Claim) -> None:
        try:
            slot.run(claim)
        except OSError:
            # The idle process is gone and its death not yet reported: replace it now.
            self._replace(slot)
            slot.run(claim)

    def _completed(self, slot: Slot, token: int, status: str, value: str | None,
                   detail: str | None) -> None:
        """A slot reported the end of an attempt."""
        claim = slot.claim
        if claim is None or claim.token != token:
            return  # already handed back to the queue (shutdown)
        slot.claim = None
        if slot.cancel_at is not None:
            outcome = Outcome(claim.id, claim.token, ok=False, cancelled=True,
                              error="cancelled")
        elif status == "ok":
            outcome = Outcome(claim.id, claim.token, ok=True, result_json=value)
        else:
            log.info("job %s (%s) attempt %d failed: %s", claim.id, claim.task,
                     claim.attempt, value)
            outcome = Outcome(claim.id, claim.token, ok=False, error=value,
                              error_detail=detail)
        self._outcomes.append(outcome)
        self._wake.set()

    def _ended(self, slot: Slot, life: Future[None]) -> None:
        """A slot's process ended: killed on purpose (cancel, timeout) or not."""
        if slot.life is not life or self._closing:
            return  # stopped or replaced on purpose, or the pool is on its way out
        self._read(slot)  # a result sent just before the end still counts
        claim = slot.claim
        if claim is not None:
            slot.claim = None
            if slot.cancel_at is not None:
                outcome = Outcome(claim.id, claim.token, ok=False, cancelled=True,
                                  error="cancelled")
            elif slot.deadline is not None and time.monotonic() >= slot.deadline:
                outcome = Outcome(claim.id, claim.token, ok=False,
                                  error=f"timeout: still running after {claim.timeout:g}s")
            else:
                outcome = Outcome(claim.id, claim.token, ok=False,
                                  error="worker_died: the job's process ended unexpectedly",
                                  error_detail=repr(life.exception()))
            self._outcomes.append(outcome)
            self._wake.set()
        else:
            log.warning("slot %d (pid %s) died while idle; replacing it", slot.index, slot.pid)
        self._replace(slot)

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

    def _read(self, slot: Slot) -> None:
        """Take what a slot sent: progress and log lines, and ended attempts."""
        conn = slot.conn
        try:
            while conn is not None and conn.poll():
                message = conn.recv()
                if message[0] == NOTE:
                    _, job_id, token, kind, data = message
                    self._notes.append(Note(job_id, token, kind, data))
                else:
                    _, token, status, value, detail = message
                    self._completed(slot, token, status, value, detail)
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            # The process died, perhaps mid-message; `life` reports the death.
            self._detach(slot)
        if self._notes:
            self._wake.set()

    # -- periodic duties --------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        now = time.monotonic()
        for slot in self.slots.busy():
            if slot.deadline and now >= slot.deadline or slot.cancel_at and now >= slot.cancel_at:
                slot.kill()
        if self._check_cancels or now >= self._next_beat:
            self._check_cancels = False
            try:
                for job_id, token in await self.store.cancel_requested(self.owner):
                    for slot in self.slots.busy():
                        if slot.claim is not None and slot.claim.id == job_id:
                            slot.request_cancel(token, self.config.cancel_grace)
            except StoreUnavailable as exc:
                log.warning("cannot read cancel requests: %s", exc)
        if now >= self._next_beat:
            self._next_beat = now + HEARTBEAT_INTERVAL
            if self.master_pid is not None and os.getppid() != self.master_pid:
                log.error("the master (pid %s) is gone; stopping the pool", self.master_pid)
                self.stop(0)
            await self._beat(now)

    async def _beat(self, now: float) -> None:
        try:
            if now >= self._next_renew:
                await self.store.renew(self.owner, self.config.lease_seconds)
                self._next_renew = now + self.config.lease_seconds / 3
                # Another pool's lease ran out (it hung, or its box died): run its jobs again.
                if recovered := await self.store.recover(self.owner, all_others=False):
                    log.warning("re-queued %d job(s) whose lease expired", recovered)
            await self.store.heartbeat(PoolInfo(
                pid=os.getpid(), slots=self.slots.pids(), slot_count=len(self.slots.all),
                busy=len(self.slots.busy()), heartbeat_at=time.time()))
        except StoreUnavailable as exc:
            log.warning("cannot renew leases or heartbeat: %s", exc)

    async def _requeue_running(self, cause: str) -> None:
        running = [(slot, slot.claim) for slot in self.slots.busy()]
        for slot, _ in running:
            slot.claim = None
            slot.kill()
        pairs = [(claim.id, claim.token) for _, claim in running if claim is not None]
        log.warning("re-queueing %d unfinished job(s): %s", len(pairs), cause)
        try:
            await self.store.requeue(pairs, cause)
        except StoreUnavailable as exc:
            # Their leases expire and the next pool start re-queues them anyway.
            log.error("cannot re-queue now (%s); they go back at the next start", exc)
