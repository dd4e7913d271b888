"""RAM-aware admission: a job starts only when what it is expected to need fits in the memory
free now, above `memory_reserve` and what running jobs are still expected to grow into."""

from __future__ import annotations

import logging
import time
from typing import Any

from scholarsource.config import format_size
from scholarsource.pool import memory
from scholarsource.pool.slots import Slots
from scholarsource.store.base import OPEN, Gate, Store

log = logging.getLogger("scholarsource.pool")

# Free memory is re-read at most this often; jobs started meanwhile are accounted for by
# their expected need.
_AVAILABLE_TTL = 0.05


class Admission:
    """Decides which queued jobs may start, and says why the others wait (`state`)."""

    def __init__(self, reserve: int, expect: memory.Expectations, slots: Slots) -> None:
        self.reserve = reserve
        self.expect = expect
        self.slots = slots
        self.state: dict[str, Any] = {}  # shown by /api/health and /api/stats
        self._available = (0.0, 0)

    async def admit(self, store: Store, n: int, gate: Gate = OPEN,
                    claimed: int = 0) -> list[int] | None:
        """Which of the next `n` queued jobs that `gate` lets start fit now (None: all of
        them). Jobs are taken in queue order and the first that does not fit stops the rest,
        so a big job is not starved by small ones passing it. `claimed` is what the jobs
        claimed earlier in the same turn are expected to need: they hold no slot yet, so
        neither the slots nor free memory count them."""
        budget = self.budget() - claimed
        if budget >= n * self.expect.largest():
            self._set({})
            return None
        refs: list[int] = []
        for ref, task in await store.peek(n, gate):
            need = self.expect.of(task)
            if need > budget:
                if refs or claimed or self.slots.busy():
                    self._set({"waiting_for_memory": True, "task": task, "needed": need,
                               "available": max(budget, 0)})
                    return refs
                # Nothing runs, so waiting would free nothing: run it alone, and say so.
                self._set({"over_budget": True, "task": task, "needed": need,
                           "available": max(budget, 0)})
                return [ref]
            budget -= need
            refs.append(ref)
        self._set({})
        return refs

    def sampled(self) -> None:
        """The slots' RSS was just sampled: read free memory anew at the next budget. A free
        figure older than the samples would count a job's fresh allocation in neither (its
        RSS no longer "still to grow", its pages not yet taken from "free"), and admit one
        job too many (seen: a third 300 MB job beside two where two fit)."""
        self._available = (0.0, 0)

    def budget(self) -> int:
        """Memory jobs may still take: free now, minus the reserve, minus what running jobs
        are expected to grow into."""
        at, free = self._available
        now = time.monotonic()
        if now - at > _AVAILABLE_TTL:
            free = memory.available()
            self._available = (now, free)
        growing = sum(max(0, slot.expected - (slot.rss or 0)) for slot in self.slots.busy())
        return free - self.reserve - growing

    def _set(self, state: dict[str, Any]) -> None:
        if state != self.state and state:
            log.warning("job of task %s waits for memory: needs %s, %s free above "
                        "memory_reserve%s", state["task"], format_size(state["needed"]),
                        format_size(max(state["available"], 0)),
                        "; running it alone" if state.get("over_budget") else "")
        self.state = state
