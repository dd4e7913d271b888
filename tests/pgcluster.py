"""A throwaway PostgreSQL cluster for tests: `initdb` into a temp dir, `pg_ctl` on a free port
with its Unix socket in that dir, trust auth, no fsync; always stopped and removed at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the
`postgres` system user, in a temp dir it owns. A test gets a fresh database copied from a
migrated template that no test writes to (`fresh_database`), or the shared working database,
emptied before it (`pg_url`).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scholarsource.launcher import free_port

# Speed over safety: a test cluster is thrown away, so nothing needs to reach the disk.
_FAST = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
         "-c max_connections=200 -c shared_buffers=64MB -c log_min_messages=warning")
TEMPLATE = "scholarsource_template"  # migrated once; fresh databases copy it, no test writes it
WORK = "scholarsource_test"  # a copy of it that `pg_url` empties for each test


def find_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: PATH first, then Debian's versioned layout."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name)
                      if Path(p).parent.parent.name.isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


@dataclass
class PgCluster:
    """One running cluster: its files, its socket directory and port."""

    bindir: Path
    root: Path
    port: int
    user: str | None  # the system user the server runs as (None: ourselves)
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for `dbname` over the Unix socket."""
        return f"postgresql://postgres@/{dbname}?host={self.root}&port={self.port}"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def restart(self) -> None:
        """Restart the server (fast: sessions are cut), with the options it started with."""
        self._run("pg_ctl", "restart", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60",
                  "-l", str(self.root / "server.log"))

    def stop(self) -> None:
        """Stop the server at once and delete its files; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w")
        except subprocess.SubprocessError:
            pass  # never started, or already gone: the files still go
        shutil.rmtree(self.root, ignore_errors=True)


def start(bindir: Path) -> PgCluster:
    """initdb and start a cluster; raises RuntimeError with its log if it cannot start."""
    root = Path(tempfile.mkdtemp(prefix="scholarsource-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = PgCluster(bindir, root, free_port(), user)
    atexit.register(cluster.stop)  # the fixture stops it; this covers an interrupted run
    log = root / "server.log"
    try:
        cluster._run("initdb", "-D", str(cluster.datadir), "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--no-sync", "--locale=C")
        cluster._run("pg_ctl", "start", "-D", str(cluster.datadir), "-w", "-t", "60",
                     "-l", str(log), "-o",
                     f"-p {cluster.port} -k {root} -c listen_addresses='' {_FAST}")
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr + (log.read_text() if log.exists() else "")
        cluster.stop()
        raise RuntimeError(f"could not start PostgreSQL: {detail}") from exc
    return cluster


def fresh_database(cluster: PgCluster, template: str = TEMPLATE) -> str:
    """A new database copied from `template` (by default empty but migrated; "template0":
    not even migrated); returns its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    return cluster.url(name)


def drop_database(cluster: PgCluster, url: str) -> None:
    """Drop the database of `url` (made by `fresh_database`), closing any session left on it."""
    import psycopg

    name = url.split("?", 1)[0].rsplit("/", 1)[1]
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_template(cluster: PgCluster) -> None:
    """Create and migrate the template database that `fresh_database` copies."""
    import psycopg

    from scholarsource.store.postgres.schema import migrate

    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    migrate(cluster.url(TEMPLATE))
    # pg_url's tests write to a database of their own: rows they leave (a test emptied it
    # only before it ran) reached every later fresh copy when it was the template itself.
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{WORK}" TEMPLATE "{TEMPLATE}"')


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster for the whole run, with a migrated template; stopped at the end whatever
    happened. Skips, saying why, where no PostgreSQL is installed."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL tests skipped: no initdb on PATH or under "
                    "/usr/lib/postgresql/*/bin (apt-get install postgresql)")
    cluster = start(bindir)
    try:
        make_template(cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The migrated test database, emptied for this test. Emptying the tables (~40 ms here)
    is cheaper than a copy of the template (~300 ms: CREATE DATABASE checkpoints twice); a
    test that changes the database itself takes its own from `fresh_database`."""
    url = pg_cluster.url(WORK)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")  # a session a test leaked fails loudly
        tables = [name for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_version'")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
    return url


@dataclass
class Bouncer:
    """A PgBouncer in transaction pooling mode in front of a test cluster."""

    root: Path
    port: int
    user: str | None

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.root}&port={self.port}"


def start_bouncer(cluster: PgCluster, binary: str) -> Bouncer:
    """Start PgBouncer (transaction mode, one server connection per database, so every
    client shares it) as the cluster's user, in a temp dir it owns."""
    root = Path(tempfile.mkdtemp(prefix="scholarsource-pgbouncer-"))
    bouncer = Bouncer(root, free_port(), cluster.user)
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(f"""
[databases]
* = host={cluster.root} port={cluster.port}
[pgbouncer]
listen_addr =
unix_socket_dir = {root}
listen_port = {bouncer.port}
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 100
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
""")
    if cluster.user is not None:
        entry = pwd.getpwnam(cluster.user)
        for path in (root, *root.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    command = [binary, "-d", str(root / "pgbouncer.ini")]
    if cluster.user is not None:
        command = ["runuser", "-u", cluster.user, "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return bouncer


def stop_bouncer(bouncer: Bouncer) -> None:
    """Stop PgBouncer (its pidfile names it) and delete its files."""
    pidfile = bouncer.root / "pgbouncer.pid"
    try:
        os.kill(int(pidfile.read_text()), 15)
    except (OSError, ValueError):
        pass  # never started, or gone already
    shutil.rmtree(bouncer.root, ignore_errors=True)


@pytest.fixture
def pgbouncer(pg_cluster: PgCluster) -> Iterator[Bouncer]:
    """PgBouncer in transaction mode in front of the test cluster; skips where Debian's
    pgbouncer package is not installed."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        pytest.skip("PgBouncer test skipped: no pgbouncer binary (apt-get install pgbouncer)")
    bouncer = start_bouncer(pg_cluster, binary)
    try:
        yield bouncer
    finally:
        stop_bouncer(bouncer)
