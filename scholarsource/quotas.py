"""Submit quotas: token buckets per API key and per tenant, and caps on non-final jobs per
tenant and server-wide. The arithmetic lives here, once; each store reads and writes the
state inside the submit's own transaction (store/admission.py), so the buckets hold across
every API worker and every box.

A bucket holds at most its rate's `limit` tokens and refills continuously, `limit` per
`window`; a submit of n jobs takes n tokens from each bucket that applies, or is refused
whole. A refused submit takes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from scholarsource.limits import Rate, TenantLimits

RATE_LIMITED = "rate_limited"
QUOTA_EXCEEDED = "quota_exceeded"
# Retry-After for a full queue: when jobs finish is unknown, so a guess that keeps a client
# from spinning while still picking the first free place up soon.
QUEUE_FULL_RETRY_SECONDS = 5


@dataclass(frozen=True)
class Ask:
    """Who submits: the tenant, and the API key with its own rate, if any."""

    tenant: str
    key_id: str | None = None
    key_rate: Rate | None = None


@dataclass(frozen=True)
class QuotaPolicy:
    """The limits from the config: `[tenants.NAME]` tables and the server-wide cap (the
    store's per-tenant overrides, set with `scholarsource tenants set`, win over these)."""

    tenants: Mapping[str, TenantLimits] = field(default_factory=dict)
    max_queued: int | None = None


@dataclass(frozen=True)
class Level:
    """A bucket as stored: its tokens at time `at` (wall clock)."""

    tokens: float
    at: float


@dataclass(frozen=True)
class TenantOverride:
    """A tenant's limits as `scholarsource tenants set` stored them; None: the config's."""

    rate: Rate | None = None
    max_queued: int | None = None
    weight: int | None = None


@dataclass
class QuotaState:
    """What a store reads at the start of a quota transaction."""

    overrides: dict[str, TenantOverride]  # per-tenant limits set in the store
    live: dict[str, int]  # non-final jobs per tenant (every tenant with any)
    levels: dict[str, Level]  # the buckets asked for that exist


@dataclass(frozen=True)
class Verdict:
    """A quota decision: `code` None admits; the headers go on the answer either way."""

    code: str | None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def bucket_names(ask: Ask) -> list[str]:
    """The buckets an ask may draw on (the tenant's rate may come from the store)."""
    names = [f"tenant:{ask.tenant}"]
    if ask.key_id is not None and ask.key_rate is not None:
        names.append(f"key:{ask.key_id}")
    return names


def effective(override: TenantOverride | None, config: TenantLimits | None) -> TenantLimits:
    """A tenant's limits in force: each one the store's override if set, else its config
    table's, else none (weight 1)."""
    base = config or TenantLimits()
    if override is None:
        return base
    return TenantLimits(
        rate=base.rate if override.rate is None else override.rate,
        max_queued=base.max_queued if override.max_queued is None else override.max_queued,
        weight=base.weight if override.weight is None else override.weight)


def _headers(rate: Rate, tokens: float) -> dict[str, str]:
    refill = (rate.limit - tokens) * rate.window / rate.limit
    return {"RateLimit-Limit": str(rate.limit),
            "RateLimit-Remaining": str(max(0, math.floor(tokens))),
            "RateLimit-Reset": str(max(0, math.ceil(refill)))}


class Ledger:
    """Quota decisions within one transaction, in order: each admitted ask lowers what the
    next one finds. `changed` is what the store writes back."""

    def __init__(self, state: QuotaState, policy: QuotaPolicy, now: float) -> None:
        self._state = state
        self._policy = policy
        self._now = now
        self._total = sum(state.live.values())
        self.changed: dict[str, Level] = {}

    def limits(self, tenant: str) -> TenantLimits:
        """The tenant's limits in force."""
        return effective(self._state.overrides.get(tenant), self._policy.tenants.get(tenant))

    def _tokens(self, name: str, rate: Rate) -> float:
        level = self._state.levels.get(name)
        if level is None:
            return float(rate.limit)
        refilled = level.tokens + (self._now - level.at) * rate.limit / rate.window
        return min(float(rate.limit), refilled)

    def unbounded(self, ask: Ask) -> bool:
        """Whether only the server-wide max_queued applies to `ask` (no bucket, no cap of
        its tenant's): then `take` admits whatever `room` has space for."""
        limits = self.limits(ask.tenant)
        return ((ask.key_id is None or ask.key_rate is None) and limits.rate is None
                and limits.max_queued is None)

    def room(self, n: int) -> bool:
        """Whether the server-wide max_queued has space for `n` more jobs."""
        cap = self._policy.max_queued
        return cap is None or self._total + n <= cap

    def check(self, ask: Ask, n: int) -> Verdict:
        """Whether `take` would admit `n` new jobs for `ask` now; takes nothing."""
        return self._decide(ask, n, False)

    def take(self, ask: Ask, n: int) -> Verdict:
        """Admit `n` new jobs for `ask` (taking n tokens from each bucket) or refuse them
        all (taking nothing)."""
        return self._decide(ask, n, True)

    def _decide(self, ask: Ask, n: int, commit: bool) -> Verdict:
        limits = self.limits(ask.tenant)
        buckets: list[tuple[str, str, Rate]] = []
        if ask.key_id is not None and ask.key_rate is not None:
            buckets.append((f"key:{ask.key_id}", "the API key's rate", ask.key_rate))
        if limits.rate is not None:
            buckets.append((f"tenant:{ask.tenant}", f"tenant {ask.tenant!r}'s rate",
                            limits.rate))
        tokens = {name: self._tokens(name, rate) for name, _, rate in buckets}
        for name, what, rate in buckets:
            if tokens[name] < n:
                wait = (n - tokens[name]) * rate.window / rate.limit
                headers = {"Retry-After": str(max(1, math.ceil(wait))),
                           **_headers(rate, tokens[name])}
                if n > rate.limit:
                    return Verdict(RATE_LIMITED, f"{n} jobs at once are more than {what} "
                                   f"({rate}) ever allows: send at most {rate.limit} at a "
                                   f"time", headers)
                return Verdict(RATE_LIMITED, f"over {what} ({rate}); retry in "
                               f"{headers['Retry-After']} s", headers)
        live = self._state.live.get(ask.tenant, 0)
        caps = [(limits.max_queued, live, f"tenant {ask.tenant!r} may have"),
                (self._policy.max_queued, self._total, "the server takes")]
        for cap, count, what in caps:
            if cap is not None and n and count + n > cap:
                retry = str(QUEUE_FULL_RETRY_SECONDS)
                return Verdict(QUOTA_EXCEEDED, f"{what} at most {cap} jobs not yet finished "
                               f"and has {count}; retry once some finish",
                               {"Retry-After": retry, "RateLimit-Limit": str(cap),
                                "RateLimit-Remaining": str(max(0, cap - count)),
                                "RateLimit-Reset": retry})
        if not commit:
            return Verdict(None)
        for name, _, _ in buckets:
            tokens[name] -= n
            if n:
                self.changed[name] = self._state.levels[name] = Level(tokens[name], self._now)
        self._state.live[ask.tenant] = live + n
        self._total += n
        # The tightest bucket speaks for the answer.
        tightest = min(buckets, key=lambda b: tokens[b[0]] / b[2].limit, default=None)
        return Verdict(None, headers={} if tightest is None else
                       _headers(tightest[2], tokens[tightest[0]]))
