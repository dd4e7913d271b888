"""The `[queues.NAME]`, `[tasks.NAME]` and `[tenants.NAME]` config tables and the rate-limit
spelling ("100/m"); what the pool's claim policy (pool/policy.py) and the API's quotas read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scholarsource.errors import ConfigError

_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
_WINDOWS = {"s": 1.0, "m": 60.0, "h": 3600.0}
RATE_HINT = 'a rate like "10/s", "100/m" or "500/h" (at least 1)'
# A queue's name, as a submit and a [queues.NAME] table spell it.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# Most jobs of one concurrency key that may run at once (a submit's or a task's limit).
MAX_CONCURRENCY = 1000


@dataclass(frozen=True)
class Rate:
    """At most `limit` starts in any `window` seconds."""

    limit: int
    window: float

    def __str__(self) -> str:
        unit = next(u for u, s in _WINDOWS.items() if s == self.window)
        return f"{self.limit}/{unit}"


def parse_rate(value: Any) -> Rate:
    """"10/s" → Rate(10, 1.0); ValueError for anything else, "0/s" included."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) < 1:
        raise ValueError(f"{value!r} is not {RATE_HINT}")
    return Rate(int(match[1]), _WINDOWS[match[2]])


@dataclass(frozen=True)
class QueueLimits:
    """One `[queues.NAME]` table: a cap on its running jobs, and slots only it may use."""

    max_running: int | None = None
    reserved: int = 0


@dataclass(frozen=True)
class TaskLimits:
    """One `[tasks.NAME]` table: overrides of what the task's decorator declares."""

    rate_limit: Rate | None = None


@dataclass(frozen=True)
class TenantLimits:
    """One `[tenants.NAME]` table: the tenant's submit rate (a token bucket shared by every
    API worker), the most non-final jobs it may hold, and its weight in the fair share of
    slots among tenants waiting at the same priority (pool/policy.py)."""

    rate: Rate | None = None
    max_queued: int | None = None
    weight: int = 1


def _whole(where: str, key: str, raw: Any, least: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < least:
        raise ConfigError(f"{where}.{key} must be a whole number of at least {least}, "
                          f"not {raw!r}")
    return raw


def _rate(where: str, key: str, keys: Mapping[str, Any]) -> Rate | None:
    """The table's rate at `key`, if it has one; ConfigError names it if it does not parse."""
    if key not in keys:
        return None
    try:
        return parse_rate(keys[key])
    except ValueError:
        raise ConfigError(f"{where}.{key} must be {RATE_HINT}, not {keys[key]!r}") from None


def _table(kind: str, name: str, raw: Any, keys: set[str]) -> Mapping[str, Any]:
    where = f"{kind}.{name}"
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"[{kind}] {name!r} is not a valid name (letters, digits, _.:-)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table: [{where}]")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ConfigError(f"unknown setting {where}.{unknown[0]} (there are: "
                          f"{', '.join(sorted(keys))})")
    return raw


def parse_queues(raw: Any) -> dict[str, QueueLimits]:
    """The `[queues]` tables; ConfigError names the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("queues must hold tables: [queues.NAME] max_running, reserved")
    out = {}
    for name, table in raw.items():
        keys = _table("queues", name, table, {"max_running", "reserved"})
        cap = keys.get("max_running")
        limits = QueueLimits(
            max_running=None if cap is None else _whole(f"queues.{name}", "max_running",
                                                        cap, 1),
            reserved=_whole(f"queues.{name}", "reserved", keys.get("reserved", 0), 0))
        if limits.max_running is not None and limits.reserved > limits.max_running:
            raise ConfigError(f"queues.{name}.reserved ({limits.reserved}) cannot be more "
                              f"than its max_running ({limits.max_running})")
        out[name] = limits
    return out


def parse_tasks(raw: Any) -> dict[str, TaskLimits]:
    """The `[tasks]` tables; ConfigError names the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("tasks must hold tables: [tasks.NAME] rate_limit")
    out = {}
    for name, table in raw.items():
        keys = _table("tasks", name, table, {"rate_limit"})
        out[name] = TaskLimits(rate_limit=_rate(f"tasks.{name}", "rate_limit", keys))
    return out


def parse_tenants(raw: Any) -> dict[str, TenantLimits]:
    """The `[tenants]` tables; ConfigError names the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("tenants must hold tables: [tenants.NAME] rate, max_queued, weight")
    out = {}
    for name, table in raw.items():
        where = f"tenants.{name}"
        keys = _table("tenants", name, table, {"rate", "max_queued", "weight"})
        cap = keys.get("max_queued")
        out[name] = TenantLimits(
            rate=_rate(where, "rate", keys),
            max_queued=None if cap is None else _whole(where, "max_queued", cap, 1),
            weight=_whole(where, "weight", keys.get("weight", 1), 1))
    return out


def check_reservations(queues: Mapping[str, QueueLimits], slots: int) -> None:
    """The reservations must fit the slots: ConfigError if they do not. (Reserving every
    slot is allowed: then only the queues with a reservation run.)"""
    reserved = sum(q.reserved for q in queues.values())
    if reserved > slots:
        raise ConfigError(f"[queues] reserve {reserved} slot(s) in all, but there are only "
                          f"{slots}: the reservations must fit the slots")
