"""What `scholarsource doctor` checks for the SQLite store before it can open one: the
library's features and a data directory that takes WAL databases. (The database itself is
checked by `SqliteStore.checks`.)"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from scholarsource.config import Config
from scholarsource.findings import Check, Status

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
RESTORE = ("stop the server and restore the latest backup (README: Backup and restore); "
           "`sqlite3 scholarsource.db .recover` may salvage rows")


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
        parent = existing_ancestor(data)
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


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
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
