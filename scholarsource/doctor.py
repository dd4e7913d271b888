"""`scholarsource doctor`: is this machine, config and data directory fit to serve?

Every check is read-only towards the live database (a `mode=ro` connection, whose read
snapshot never blocks the server's writers in WAL mode), so it is safe while the server runs.
Each check returns OK, WARN (works, but will hurt) or FAIL (will not work), with what is
wrong and how to fix it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from scholarsource.config import Config, load_config
from scholarsource.errors import ConfigError
from scholarsource.sizing import plan
from scholarsource.store.schema import SCHEMA_VERSION

_MIB = 1024**2
# Below this, SQLite's next WAL growth or checkpoint can fail and the API answers 503.
_DISK_FAIL = 100 * _MIB
# Below this (or twice the database), a backup or VACUUM beside the database may not fit.
_DISK_WARN = 1024 * _MIB

# What store/sqlite.py needs from the SQLite library, each with the release that brought it.
# Probing beats comparing versions alone: a distribution can build SQLite without JSON.
_MIN_SQLITE = (3, 38, 0)
_FEATURES = {
    "INSERT ... RETURNING (3.35)": "CREATE TABLE t (a INTEGER PRIMARY KEY, b);"
                                   "INSERT INTO t (b) VALUES (1) RETURNING a;",
    "UPDATE ... FROM (3.33)": "UPDATE t SET b = s.b FROM (SELECT 1 AS a, 2 AS b) AS s "
                              "WHERE t.a = s.a;",
    "upsert, ON CONFLICT DO UPDATE (3.24)": "INSERT INTO t (a, b) VALUES (1, 3) "
                                            "ON CONFLICT (a) DO UPDATE SET b = excluded.b;",
    "JSON functions and json_each": "SELECT json_object('a', value) FROM json_each('[1]');",
    "the ->> operator (3.38)": "SELECT '[1]' ->> '$[0]';",
}


class Status(StrEnum):
    """How a check came out."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it came out, and how to fix it."""

    name: str
    status: Status
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for --json."""
        return {**asdict(self), "status": self.status.value}


def diagnose(config_file: str | None, overrides: Mapping[str, Any]) -> list[Check]:
    """Run every check; later checks need a valid config, so a bad one is the only finding."""
    try:
        config = load_config(config_file, overrides=overrides)
    except ConfigError as exc:
        return [Check("config", Status.FAIL, str(exc),
                      "correct the setting named above (`scholarsource check-config` shows "
                      "every layer)")]
    checks = [Check("config", Status.OK, f"valid{f' ({config_file})' if config_file else ''}")]
    steps: list[Callable[[Config], Check]] = [
        check_sqlite, check_data_dir, check_database, check_disk, check_sizing]
    return checks + [step(config) for step in steps]


def check_sqlite(config: Config) -> Check:
    """The SQLite library Python links against has every feature our SQL uses."""
    version = sqlite3.sqlite_version
    missing = []
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for feature, sql in _FEATURES.items():
            try:
                conn.executescript(sql)
            except sqlite3.Error:
                missing.append(feature)
    finally:
        conn.close()
    if missing or sqlite3.sqlite_version_info < _MIN_SQLITE:
        lacking = f"; it lacks {', '.join(missing)}" if missing else ""
        return Check("sqlite", Status.FAIL,
                     f"SQLite {version} is older than {'.'.join(map(str, _MIN_SQLITE))}"
                     f"{lacking}",
                     "run ScholarSource on a Python whose sqlite3 module links SQLite "
                     "3.38 or newer (e.g. Python 3.11+ from python.org, or a newer distro)")
    return Check("sqlite", Status.OK, f"SQLite {version} has every feature the store uses")


def check_data_dir(config: Config) -> Check:
    """The data directory exists (or can be made) and takes a WAL database."""
    data = Path(config.data_dir)
    if not data.exists():
        parent = _existing_ancestor(data)
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check("data_dir", Status.OK, f"{data} does not exist yet; serve creates it")
        return Check("data_dir", Status.FAIL, f"{data} does not exist and {parent} is not a "
                     f"writable directory", f"create {data} and give the server's user write "
                     f"access to it, or set data_dir elsewhere")
    if not data.is_dir():
        return Check("data_dir", Status.FAIL, f"{data} is not a directory",
                     "point data_dir at a directory")
    try:
        journal = _probe_wal(data)
    except (OSError, sqlite3.Error) as exc:
        return Check("data_dir", Status.FAIL, f"cannot write a database in {data}: {exc}",
                     "give the server's user write access to the data directory")
    if journal != "wal":
        return Check("data_dir", Status.FAIL, f"{data} cannot hold a WAL database (got "
                     f"journal_mode={journal}); network filesystems often cannot",
                     "put data_dir on a local filesystem")
    return Check("data_dir", Status.OK, f"{data} is writable and takes WAL databases")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _probe_wal(data: Path) -> str:
    """Create a scratch database beside the real one, switch it to WAL, write, remove it."""
    with tempfile.TemporaryDirectory(prefix=".doctor-", dir=data) as scratch:
        conn = sqlite3.connect(Path(scratch) / "probe.db", isolation_level=None)
        try:
            journal = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            conn.execute("CREATE TABLE probe (x)")
            conn.execute("INSERT INTO probe VALUES (1)")
            return journal
        finally:
            conn.close()


def check_database(config: Config) -> Check:
    """The database, if there is one, passes quick_check and has a schema we understand."""
    db = config.db_path
    if not db.exists():
        return Check("database", Status.OK, f"no database at {db} yet; serve creates it")
    try:
        # mode=ro: never creates, migrates or writes the live database.
        conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True,
                               isolation_level=None, timeout=10)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("database", Status.FAIL, f"cannot read {db}: {exc}", _RESTORE)
    if problems != ["ok"]:
        return Check("database", Status.FAIL, f"{db} is damaged: {'; '.join(problems)}",
                     _RESTORE)
    if version > SCHEMA_VERSION:
        return Check("database", Status.FAIL, f"{db} has schema {version}, newer than this "
                     f"ScholarSource understands ({SCHEMA_VERSION})",
                     "upgrade ScholarSource to the version that wrote this database")
    later = "" if version == SCHEMA_VERSION else \
        f"; serve migrates it from schema {version} to {SCHEMA_VERSION}"
    return Check("database", Status.OK, f"{db} passes quick_check{later}")


_RESTORE = ("stop the server and restore the latest backup (README: Backup and restore); "
            "`sqlite3 scholarsource.db .recover` may salvage rows")


def check_disk(config: Config) -> Check:
    """Enough free space for the WAL, checkpoints and a backup beside the database."""
    where = _existing_ancestor(Path(config.data_dir))
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
