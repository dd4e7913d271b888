"""`scholarsource doctor`: is this machine, config, data directory and store fit to serve?

Every check is read-only towards the live store (the store's own checks, `Store.checks`, only
read: SQLite's through a `mode=ro` connection, whose read snapshot never blocks the server's
writers in WAL mode), so it is safe while the server runs. Each check returns OK, WARN (works,
but will hurt) or FAIL (will not work), with what is wrong and how to fix it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scholarsource.config import Config, load_config
from scholarsource.errors import ConfigError
from scholarsource.findings import Check, Status
from scholarsource.sizing import plan
from scholarsource.store.factory import check_store
from scholarsource.store.sqlite_checks import existing_ancestor

__all__ = ["Check", "Status", "diagnose", "check_disk", "check_sizing"]

_MIB = 1024**2
# Below this, SQLite's next WAL growth or checkpoint can fail and the API answers 503.
_DISK_FAIL = 100 * _MIB
# Below this (or twice the database), a backup or VACUUM beside the database may not fit.
_DISK_WARN = 1024 * _MIB


def diagnose(config_file: str | None, overrides: Mapping[str, Any]) -> list[Check]:
    """Run every check; later checks need a valid config, so a bad one is the only finding."""
    try:
        config = load_config(config_file, overrides=overrides)
    except ConfigError as exc:
        return [Check("config", Status.FAIL, str(exc),
                      "correct the setting named above (`scholarsource check-config` shows "
                      "every layer)")]
    checks = [Check("config", Status.OK, f"valid{f' ({config_file})' if config_file else ''}")]
    return [*checks, *asyncio.run(check_store(config)), check_disk(config),
            check_sizing(config)]


def check_disk(config: Config) -> Check:
    """Enough free space for the WAL, checkpoints and a backup beside the database."""
    where = existing_ancestor(Path(config.data_dir))
    free = shutil.disk_usage(where).free
    db_size = config.db_path.stat().st_size if config.db_path.exists() else 0
    message = f"{free // _MIB} MiB free in {where}"
    if free < _DISK_FAIL:
        return Check("disk", Status.FAIL, message + "; writes will soon fail (503)",
                     "free disk space or move data_dir to a larger filesystem")
    if free < max(_DISK_WARN, 2 * db_size):
        return Check("disk", Status.WARN, message + f", database {db_size // _MIB} MiB; a "
                     f"backup or VACUUM beside it may not fit",
                     "free disk space or move data_dir to a larger filesystem")
    return Check("disk", Status.OK, message)


def check_sizing(config: Config) -> Check:
    """The sizing plan fits the machine: slots x memory_per_job within RAM."""
    sizing = plan(config)
    planned = sizing.slots * config.memory_per_job + config.memory_reserve
    if planned > sizing.memory_total:
        return Check("sizing", Status.WARN,
                     f"{sizing.slots} slots x {config.memory_per_job // _MIB} MiB per job + "
                     f"{config.memory_reserve // _MIB} MiB reserve = {planned // _MIB} MiB, "
                     f"more than the {sizing.memory_total // _MIB} MiB of RAM: jobs running "
                     f"together can be killed for memory",
                     f"set slots to at most {max(1, sizing.slots_by_memory)} (or 0 to size "
                     f"automatically), or lower memory_per_job if jobs need less")
    return Check("sizing", Status.OK, sizing.describe())
