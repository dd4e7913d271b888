"""`scholarsource doctor` against the store of a running server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scholarsource.exitcodes import EXIT_OK
from tests.e2e.jobs_api import submit, wait_finished

pytestmark = pytest.mark.e2e


@pytest.mark.both_backends
def test_doctor_reads_a_live_database_without_disturbing_the_server(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    job = submit(client, "noop")
    result = subprocess.run([sys.executable, "-m", "scholarsource", "doctor", "--json",
                             "--data-dir", str(server.data_dir)],
                            capture_output=True, text=True, env=server.cli_env(), timeout=60)
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["database"]["status"] == "OK"
    if server.database:
        assert checks["database"]["message"].startswith("PostgreSQL ")
        assert checks["migrations"]["status"] == "OK"
        assert checks["queue lag"]["status"] == "OK"
    else:
        assert "passes quick_check" in checks["database"]["message"]
    assert wait_finished(client, job["id"])["status"] == "succeeded"
    assert server.health()["status"] == "ok"
