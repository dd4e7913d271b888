"""How many API workers and job slots this machine gets, and why."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from scholarsource.config import Config

_MIB = 1024**2


@dataclass(frozen=True)
class Plan:
    """The sizing decision and every input it came from."""

    workers: int
    slots: int
    cores: int
    memory_total: int
    memory_available: int
    slots_by_cpu: int
    slots_by_memory: int
    reason: str

    def describe(self) -> str:
        """One paragraph for the start-up log and `scholarsource plan`."""
        return (f"{self.workers} API worker(s), {self.slots} job slot(s): {self.reason} "
                f"[{self.cores} cores, {self.memory_available // _MIB} MiB of "
                f"{self.memory_total // _MIB} MiB available]")

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for --json output."""
        return asdict(self)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup cpusets
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def plan(config: Config) -> Plan:
    """Size the server: workers default to the cores; slots to min(CPU, RAM) budgets."""
    cores = _cores()
    memory = psutil.virtual_memory()
    by_cpu = max(1, int(cores * config.slots_per_core))
    by_memory = max(1, (memory.available - config.memory_reserve) // max(config.memory_per_job, 1))
    if config.slots:
        slots, reason = config.slots, "slots set in the configuration"
    elif by_memory < by_cpu:
        slots = by_memory
        reason = (f"memory-bound: ({memory.available // _MIB} MiB available - "
                  f"{config.memory_reserve // _MIB} MiB reserve) / "
                  f"{config.memory_per_job // _MIB} MiB per job = {by_memory}, "
                  f"fewer than {by_cpu} by CPU")
    else:
        slots = by_cpu
        reason = (f"CPU-bound: {cores} cores x {config.slots_per_core:g} slots per core = "
                  f"{by_cpu} (memory would allow {by_memory})")
    workers = config.workers or cores
    return Plan(workers=workers, slots=slots, cores=cores, memory_total=memory.total,
                memory_available=memory.available, slots_by_cpu=by_cpu,
                slots_by_memory=by_memory, reason=reason)
