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
    workers_reason: str
    slots_per_core: float
    slots_set: bool  # `slots` was configured, not sized
    memory_per_job: int

    def describe(self) -> str:
        """One line for the start-up log, `check-config` and `scholarsource plan`."""
        return (f"{self.workers} API worker(s) ({self.workers_reason}), {self.slots} job "
                f"slot(s): {self.reason} [{self.cores} cores, {self.memory_available // _MIB} "
                f"MiB of {self.memory_total // _MIB} MiB available]")

    def advice(self) -> str:
        """What to change for I/O-bound jobs (most users': LLM calls, scraping), which wait
        far more than they compute, so one core can keep several of them busy."""
        if self.slots_set:
            return ("slots is set, so slots_per_core does not apply. For I/O-bound jobs (LLM "
                    "calls, scraping), which mostly wait, more slots than cores pay off.")
        if self.slots_by_memory < self.slots_by_cpu:
            return (f"Memory limits the slots, so a higher slots_per_core adds none. If your "
                    f"jobs need less than memory_per_job ({self.memory_per_job // _MIB} MiB), "
                    f"lower it, e.g. memory_per_job = \"256MB\".")
        more = max(4.0, self.slots_per_core * 2)
        return (f"This fits CPU-bound jobs. I/O-bound jobs (LLM calls, scraping) mostly wait, "
                f"so one core keeps several busy: raise slots_per_core (now "
                f"{self.slots_per_core:g}), e.g. slots_per_core = {more:g} in the config file "
                f"or SCHOLARSOURCE_SLOTS_PER_CORE={more:g} (memory still caps the slots).")

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
                slots_by_memory=by_memory, reason=reason,
                workers_reason="set in the configuration" if config.workers else
                "one per core", slots_per_core=config.slots_per_core,
                slots_set=bool(config.slots), memory_per_job=config.memory_per_job)
