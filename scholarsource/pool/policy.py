"""Which queued jobs may start: one policy, decided here and in the claim query.

The store's claim passes over, inside one statement, the jobs of paused queues, of tasks at
their rate limit and of concurrency keys at their limit (so those rules hold across pools).
What only this pool knows, how many of its slots each queue holds, becomes the claim's
`Gate`: queues at their `max_running` are skipped, and so are the queues with no share of
the free slots once other queues' unfilled reservations are set aside. The gate also carries
the tenants' weights (`[tenants.NAME] weight`): among the tenants with jobs that may start
at the same priority, each claim is one tenant's turn, and turns go round-robin in
proportion to the weights (stride scheduling, inside the claim query), so a tenant with a
long backlog does not delay one that queues a few jobs after it. Memory admission
(pool/admission.py) then says whether the next jobs fit. No rule waits on a job: a job that
may not start is passed over, so it never holds back one that may.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping

from scholarsource.errors import StoreUnavailable
from scholarsource.limits import QueueLimits, TenantLimits
from scholarsource.pool.admission import Admission
from scholarsource.store.base import OPEN, Claim, Gate, Store


def gate(queues: Mapping[str, QueueLimits], running: Counter[str],
         free: int) -> tuple[Gate, int]:
    """The queues that may take one of `free` slots now, and how many jobs one claim may
    take without breaking a cap or a reservation (a claim cannot count its own rows; 0:
    none may start). A queue's room is the shared slots (free, less every unfilled
    reservation) plus its own unfilled reservation, within its cap."""
    if not queues:  # no caps and no reservations: every queue may fill every free slot
        return OPEN, free
    unfilled = {name: max(0, q.reserved - running[name]) for name, q in queues.items()}
    shared = free - sum(unfilled.values())

    def room(name: str) -> int:
        q = queues[name]
        n = shared + unfilled[name]
        return n if q.max_running is None else min(n, q.max_running - running[name])

    rooms = {name: room(name) for name in queues}
    skip = tuple(name for name, n in rooms.items() if n <= 0)
    open_rooms = [n for n in rooms.values() if n > 0]
    if shared > 0:  # unconfigured queues may take a share too
        return Gate(skip=skip), min([shared, *open_rooms])
    only = tuple(name for name, n in rooms.items() if n > 0)
    return Gate(skip=skip, only=only), min(open_rooms, default=0)


class Policy:
    """Claims for the free slots what may start now; the dispatcher calls `claim` alone."""

    def __init__(self, queues: Mapping[str, QueueLimits], admission: Admission,
                 rate_limited: bool, tenants: Mapping[str, TenantLimits] | None = None) -> None:
        self.queues = dict(queues)
        self.admission = admission
        self.weights: tuple[tuple[str, int], ...] = ()
        self.use_tenants(tenants or {})
        # A rate limit's window is counted once per statement: with one, claim one by one.
        self.rate_limited = rate_limited
        # Wall clock: when a job held back by a rate limit may start (a wake-up, if any).
        self.retry_at: float | None = None
        # Why the last claim stopped short after claiming some jobs (see claim).
        self.failed: StoreUnavailable | None = None

    def use_tenants(self, tenants: Mapping[str, TenantLimits]) -> None:
        """The tenants' limits in force (the config's, or `scholarsource tenants set`'s)."""
        # Only weights other than the default travel with each claim.
        self.weights = tuple(sorted((name, t.weight) for name, t in tenants.items()
                                    if t.weight != 1))

    async def claim(self, store: Store, owner: str, free: int, lease_seconds: float,
                    running: Iterable[Claim]) -> list[Claim]:
        """Up to `free` jobs, claimed in rounds (a tenant's turn each) until a round takes
        nothing. A store that fails after an earlier round claimed jobs does not lose them:
        they are returned, to be started, and the error is kept in `failed` (raised only
        when nothing was claimed)."""
        self.retry_at = None
        self.failed = None
        claims: list[Claim] = []
        try:
            return await self._rounds(store, owner, free, lease_seconds, running, claims)
        except StoreUnavailable as exc:
            if not claims:
                raise
            self.failed = exc
            return claims

    async def _rounds(self, store: Store, owner: str, free: int, lease_seconds: float,
                      running: Iterable[Claim], claims: list[Claim]) -> list[Claim]:
        counts = Counter(claim.queue for claim in running) if self.queues else Counter()
        claimed_memory = 0  # what this turn's claims will need: no slot runs them yet
        while len(claims) < free:
            rule, n = gate(self.queues, counts, free - len(claims))
            if self.weights:
                rule = dataclasses.replace(rule, weights=self.weights)
            if self.rate_limited:
                n = min(n, 1)
            if n <= 0:
                break
            refs = await self.admission.admit(store, n, rule, claimed_memory)
            if refs == []:
                break
            got = await store.claim(owner, n, lease_seconds, refs, rule)
            if not got:
                break
            claims += got
            counts.update(claim.queue for claim in got)
            claimed_memory += sum(self.admission.expect.of(claim.task) for claim in got)
        if len(claims) < free and self.rate_limited:
            self.retry_at = await store.rate_free_at()
        return claims
