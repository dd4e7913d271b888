"""Requests generated from our own OpenAPI document never get a server error.

schemathesis reads /api/openapi.json and sends valid and invalid requests to every route;
its checks fail on any 5xx, any answer that contradicts the document, and any schema-valid
request that is refused. This is a broad smoke test with a fixed seed, not a deep search:
60 examples per route did not rediscover the two 500s a 300-example run found. To search
further by hand, run the same command with `--max-examples 300` and no seed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_generated_requests_never_get_a_server_error(serve, tmp_path: Path) -> None:
    # The document now describes each task's params, so generated submits are valid and
    # run: no sample tasks (they write files at whatever path they are given) and only the
    # safe built-ins (memory would allocate up to a GB, crash would kill the slot).
    # A short grace: generated sleeps may still run when the test stops the server. Every
    # job times out within 2 s (the document's maximum follows the setting): a generated
    # 12-hour sleep held the one slot, and each generated workflow's event stream then
    # waited out the client's 10 s timeout (150 s instead of 45).
    server = serve(slots=1, env={"SCHOLARSOURCE_TASK_MODULES": "",
                                 "SCHOLARSOURCE_BUILTIN_TASKS": "safe",
                                 "SCHOLARSOURCE_GRACE_PERIOD": "1",
                                 "SCHOLARSOURCE_DEFAULT_TIMEOUT": "2",
                                 "SCHOLARSOURCE_MAX_TIMEOUT": "2"})
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    # 30 examples per operation: 60 took ~50 s of a suite that must stay under 10 minutes;
    # tests/e2e/test_hostile_input.py sends the directed hostile shapes to every route.
    # One worker: with two threads, hypothesis's ast.parse (describing a strategy's lambda)
    # ran in both at once and CPython 3.11.7 raised "SystemError: AST constructor recursion
    # depth mismatch" inside schemathesis, failing the run with no request at fault.
    result = subprocess.run(
        [cli, "run", f"{server.url}/api/openapi.json", "--checks", "all", "--max-examples",
         "30", "--seed", "1", "--workers", "1"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        cwd=tmp_path)  # it keeps a .schemathesis/ folder in its working directory
    assert result.returncode == 0, result.stdout[-6000:]
    log = server.log()
    assert "internal_error" not in log and "Traceback" not in log
