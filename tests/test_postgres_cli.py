"""`scholarsource doctor` and `scholarsource backup` through the real CLI, against databases
of the throwaway PostgreSQL cluster (tests/pgcluster.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from scholarsource.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_UNHEALTHY
from scholarsource.store.base import NewJob
from scholarsource.store.postgres import PostgresStore
from scholarsource.store.postgres.schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from tests.conftest import server_env
from tests.pgcluster import PgCluster, drop_database, fresh_database


def scholarsource(url: str, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m scholarsource ARGV` with `url` as its database."""
    return subprocess.run([sys.executable, "-m", "scholarsource", *argv, "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True,
                          env=server_env(SCHOLARSOURCE_DATABASE=url), timeout=60)


def doctor(url: str, tmp_path: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """doctor --json: its exit code and its checks by name."""
    done = scholarsource(url, tmp_path, "doctor", "--json")
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


async def _submit(url: str, n: int) -> None:
    store = await PostgresStore.open(url)
    try:
        await store.submit_many([NewJob("noop", {}, "default", 0, 1)] * n)
    finally:
        await store.close()


def test_doctor_names_the_server_version_the_schema_and_the_oldest_queued_job(
        pg_url: str, tmp_path: Path) -> None:
    code, checks = doctor(pg_url, tmp_path)
    assert code == EXIT_OK, checks
    with psycopg.connect(pg_url) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
    assert checks["database"]["status"] == "OK"
    assert checks["database"]["message"].startswith(f"PostgreSQL {version}, ")
    assert (checks["migrations"]["status"], checks["migrations"]["message"]) == (
        "OK", f"schema {PG_SCHEMA_VERSION}")
    assert checks["queue lag"]["message"] == "no job is queued"

    asyncio.run(_submit(pg_url, 3))
    with psycopg.connect(pg_url) as conn:  # submitted 90 s ago, as far as the queue knows
        conn.execute("UPDATE jobs SET created_at = created_at - 90")
    code, checks = doctor(pg_url, tmp_path)
    lag = re.fullmatch(r"3 job\(s\) queued; the oldest was submitted ([\d.]+) s ago",
                       checks["queue lag"]["message"])
    assert code == EXIT_OK and lag is not None, checks["queue lag"]
    assert 90 <= float(lag[1]) < 150


def test_doctor_on_a_new_database_says_serve_creates_the_schema_and_fails_a_newer_one(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    empty = fresh_database(pg_cluster, "template0")  # not even migrated
    newer = fresh_database(pg_cluster)
    try:
        new_code, new_checks = doctor(empty, tmp_path)
        with psycopg.connect(newer) as conn:  # as a later ScholarSource on another box leaves it
            conn.execute("INSERT INTO schema_version VALUES (99, 0)")
        code, checks = doctor(newer, tmp_path)
    finally:
        drop_database(pg_cluster, empty)
        drop_database(pg_cluster, newer)
    assert new_code == EXIT_OK, new_checks
    assert new_checks["database"]["status"] == "OK"
    assert new_checks["migrations"] == {"name": "migrations", "status": "OK",
                                        "message": "no schema yet; serve creates it",
                                        "fix": None}
    assert code == EXIT_UNHEALTHY
    assert checks["migrations"]["status"] == "FAIL"
    assert "schema 99, newer than this ScholarSource understands" in \
        checks["migrations"]["message"]
    assert "upgrade ScholarSource" in checks["migrations"]["fix"]


def test_doctor_names_why_it_cannot_connect(pg_cluster: PgCluster, tmp_path: Path) -> None:
    done = scholarsource(pg_cluster.url("no_such_db"), tmp_path, "doctor", "--json")
    assert done.returncode == EXIT_UNHEALTHY
    database = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["database"]
    assert database["status"] == "FAIL"
    # The server's own reason, not a pool's timeout after its silent retries.
    assert 'database "no_such_db" does not exist' in database["message"]
    assert "error connecting" not in done.stderr


def test_backup_prints_the_pg_dump_and_pg_restore_that_copy_the_queue(
        pg_cluster: PgCluster, pg_url: str, tmp_path: Path) -> None:
    asyncio.run(_submit(pg_url, 5))
    dump = tmp_path / "queue.dump"
    done = scholarsource(pg_url, tmp_path, "backup", str(dump))
    assert done.returncode == EXIT_FAILURE and done.stdout == ""
    assert "Traceback" not in done.stderr and not dump.exists()
    found = re.search(r'(pg_dump --format=custom --file=\S+ "\$DATABASE_URL").*'
                      r'(pg_restore --no-owner --dbname="\$DATABASE_URL" \S+)$',
                      done.stderr.strip(), re.DOTALL)
    assert done.stderr.startswith("error: ") and found is not None, done.stderr

    # The commands it prints work: dump the queue, restore it into an empty database.
    path = f"{pg_cluster.bindir}{os.pathsep}{os.environ['PATH']}"
    subprocess.run(["sh", "-c", found[1]], check=True, timeout=60,
                   env={**os.environ, "PATH": path, "DATABASE_URL": pg_url})
    copy = fresh_database(pg_cluster, "template0")
    try:
        subprocess.run(["sh", "-c", found[2]], check=True, timeout=60, capture_output=True,
                       env={**os.environ, "PATH": path, "DATABASE_URL": copy})
        code, checks = doctor(copy, tmp_path)
        assert code == EXIT_OK, checks
        assert checks["migrations"]["message"] == f"schema {PG_SCHEMA_VERSION}", checks
        assert checks["queue lag"]["message"].startswith("5 job(s) queued")
    finally:
        drop_database(pg_cluster, copy)


def test_keys_create_migrates_a_new_database_but_never_one_servers_run_on(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    empty = fresh_database(pg_cluster, "template0")  # not even migrated
    older = fresh_database(pg_cluster)
    try:
        first = scholarsource(empty, tmp_path, "keys", "create", "--tenant", "acme")
        with psycopg.connect(empty) as conn:
            migrated = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        with psycopg.connect(older) as conn:  # as an older ScholarSource's boxes left it
            conn.execute("DELETE FROM schema_version WHERE version = %s",
                         (PG_SCHEMA_VERSION,))
        refused = scholarsource(older, tmp_path, "keys", "create", "--tenant", "acme")
        with psycopg.connect(older) as conn:
            kept = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    finally:
        drop_database(pg_cluster, empty)
        drop_database(pg_cluster, older)
    assert first.returncode == EXIT_OK and first.stdout.startswith("ss_"), first.stderr
    assert migrated == (PG_SCHEMA_VERSION,)
    # Servers on other boxes hold no lock here: the schema is left to them.
    assert refused.returncode == EXIT_FAILURE and refused.stdout == ""
    assert f"has schema {PG_SCHEMA_VERSION - 1}" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert kept == (PG_SCHEMA_VERSION - 1,)
