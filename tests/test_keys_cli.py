"""`scholarsource keys` on a stopped server's store, and `serve` refusing auth = "none" where
other machines can reach it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from scholarsource import keys
from scholarsource.cli import main
from scholarsource.datalock import lock_data_dir
from scholarsource.exitcodes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from scholarsource.launcher import free_port
from scholarsource.store import schema
from tests.test_cli import run_cli


def keys_cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["keys", *args, "--data-dir", str(tmp_path)])
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_key_once_and_list_never_shows_it(tmp_path: Path) -> None:
    code, out, err = keys_cli(tmp_path, "create", "--tenant", "acme", "--name", "web",
                              "--role", "read", "--rate", " 60 / m ")
    assert code == EXIT_OK and "shown only now" in err
    text = out.strip()
    key_id = keys.key_id_of(text)
    assert key_id is not None and key_id in err
    code, listed, _ = keys_cli(tmp_path, "list", "--json")
    (row,) = json.loads(listed)
    assert (row["id"], row["tenant"], row["role"], row["name"], row["rate"]) == \
        (key_id, "acme", "read", "web", "60/m")
    code, table, _ = keys_cli(tmp_path, "list")
    assert key_id in table and "live" in table
    for shown in (listed, table):
        assert text not in shown and text.split("_", 2)[2] not in shown
    code, out, _ = keys_cli(tmp_path, "revoke", key_id)
    assert code == EXIT_OK and f"revoked key {key_id}" in out
    assert json.loads(keys_cli(tmp_path, "list", "--json")[1])[0]["revoked_at"] is not None


def test_create_leaves_the_schema_of_a_running_server_as_it_is(tmp_path: Path) -> None:
    # An older server's database (schema one version back), its data directory held.
    db = tmp_path / "scholarsource.db"
    schema.migrate(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION - 1}")
    lock = lock_data_dir(tmp_path)
    try:
        # It says what to do rather than change the schema under the running server.
        code, out, err = keys_cli(tmp_path, "create", "--tenant", "acme")
        assert code == EXIT_FAILURE and out == ""
        assert "a server holds" in err, err
        assert f"has schema {schema.SCHEMA_VERSION - 1}" in err, err
        assert "once it is ready" in err and "restart it with this one" in err, err
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION - 1,)
    finally:
        os.close(lock)
    code, out, _ = keys_cli(tmp_path, "create", "--tenant", "acme")  # no server: it migrates
    assert code == EXIT_OK and keys.key_id_of(out.strip()) is not None
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)


def test_create_while_a_server_is_starting_on_a_new_data_dir_says_to_wait(
        tmp_path: Path) -> None:
    lock = lock_data_dir(tmp_path)  # the server holds it and has not made its file yet
    try:
        code, out, err = keys_cli(tmp_path, "create", "--tenant", "acme")
    finally:
        os.close(lock)
    assert code == EXIT_FAILURE and out == "" and "Traceback" not in err
    assert "has schema 0" in err and "once it is ready" in err, err
    assert not (tmp_path / "scholarsource.db").exists()


def test_first_keys_made_at_once_on_a_new_data_dir_all_work(tmp_path: Path) -> None:
    # One-off commands hold the data directory shared: none takes another for a server,
    # and their migrations of the new file do not collide.
    command = [sys.executable, "-m", "scholarsource", "keys", "create", "--tenant", "acme",
               "--data-dir", str(tmp_path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(6)]
    results = [(run.wait(timeout=60), *run.communicate()) for run in runs]
    assert all(code == EXIT_OK for code, _, _ in results), results
    ids = {keys.key_id_of(out.strip()) for _, out, _ in results}
    assert None not in ids and len(ids) == 6
    code, listed, _ = keys_cli(tmp_path, "list", "--json")
    assert {row["id"] for row in json.loads(listed)} == ids


@pytest.mark.parametrize("rate", ["sixty", "0/m", "60/week", "60"])
def test_a_rate_that_does_not_parse_is_a_usage_error_and_writes_nothing(
        tmp_path: Path, rate: str) -> None:
    code, out, err = keys_cli(tmp_path, "create", "--tenant", "acme", "--rate", rate)
    assert code == EXIT_CONFIG and "--rate" in err and "100/m" in err
    assert out == "" and not tmp_path.joinpath("scholarsource.db").exists()


@pytest.mark.parametrize("args", [["--tenant", "a b"], ["--tenant", "acme", "--role", "root"]])
def test_a_bad_tenant_or_role_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    code, out, _ = keys_cli(tmp_path, "create", *args)
    assert code == EXIT_CONFIG and out == ""


def test_revoking_an_unknown_key_fails(tmp_path: Path) -> None:
    keys_cli(tmp_path, "create", "--tenant", "acme")
    code, _, err = keys_cli(tmp_path, "revoke", "0123456789ab")
    assert code == EXIT_FAILURE and "no key '0123456789ab'" in err


def test_serve_refuses_auth_none_on_a_remote_bind(tmp_path: Path) -> None:
    env = {"SCHOLARSOURCE_AUTH": "none", "SCHOLARSOURCE_ALLOWED_HOSTS": "*",
           "SCHOLARSOURCE_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("serve", "--bind", f"0.0.0.0:{free_port()}", env=env)
    assert result.returncode == EXIT_CONFIG
    assert "allow_unauthenticated_remote" in result.stderr and "auth" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created
