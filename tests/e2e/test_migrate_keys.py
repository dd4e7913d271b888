"""`scholarsource migrate-to` carries the API keys: after moving from SQLite to PostgreSQL,
clients keep their keys, a revoked key stays revoked, and a second run copies none again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scholarsource.exitcodes import EXIT_OK
from tests.conftest import Server
from tests.e2e.keyring import KEYS, as_key, make_key, revoke
from tests.e2e.test_migrate_to import _migrate

pytestmark = pytest.mark.e2e


def test_keys_move_to_postgres_with_the_jobs(serve: Callable[..., Server], tmp_path: Path,
                                             pg_url: str) -> None:
    sqlite_dir = tmp_path / "sqlite"
    old = serve(data_dir=sqlite_dir, env=KEYS)
    kept, gone = make_key(old, "acme", "submit"), make_key(old, "acme", "read")
    revoke(old, gone)
    # Due in an hour: still to run, so it moves.
    job = as_key(old, kept).post("/api/jobs", json={"task": "noop", "delay": 3600}).json()
    old.stop()

    copied = _migrate(sqlite_dir, pg_url)
    assert copied.returncode == EXIT_OK, copied.stderr
    assert "2 API key(s)" in copied.stdout, copied.stdout
    again = _migrate(sqlite_dir, pg_url)
    assert "0 API key(s)" in again.stdout, again.stdout

    new = serve(data_dir=tmp_path / "pg", env={**KEYS, "SCHOLARSOURCE_DATABASE": pg_url})
    assert as_key(new, kept).get(f"/api/jobs/{job['id']}").status_code == 200
    assert as_key(new, gone).get("/api/jobs").status_code == 401
