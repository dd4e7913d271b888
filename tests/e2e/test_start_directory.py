"""A new user's own task module, next to where they start the server (issue 9 §3):
`task_modules = ["myapp.jobs"]` for ./myapp/jobs.py used to fail with `No module named
'myapp'`, because the `scholarsource` script, unlike `python -m`, leaves the start directory
off sys.path. The task must import in the pool and run in a slot (a forkserver child)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from scholarsource.launcher import free_port, launch
from tests.e2e.jobs_api import wait_finished

pytestmark = pytest.mark.e2e

JOBS = '''
from scholarsource import task


@task("shout")
def shout(ctx, text):
    return text.upper()
'''


def test_task_module_in_the_start_directory(tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(JOBS)
    port = free_port()
    (tmp_path / "scholarsource.toml").write_text(
        f'bind = "127.0.0.1:{port}"\nslots = 1\nworkers = 1\ngrace_period = 1\n'
        'task_modules = ["myapp.jobs"]\n')
    script = Path(sys.executable).parent / "scholarsource"
    assert script.exists(), f"the console script is installed next to {sys.executable}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SCHOLARSOURCE_") and k != "PYTHONPATH"}
    server = launch([str(script), "serve", "--config", "scholarsource.toml"],
                    url=f"http://127.0.0.1:{port}", log_path=tmp_path / "server.log", env=env,
                    cwd=tmp_path, wait=False)
    try:
        server.wait_ready(60)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            job = client.post("/api/jobs", json={"task": "shout", "params": {"text": "hi"}})
            assert job.status_code == 202, job.text
            done = wait_finished(client, job.json()["id"])
        assert (done["status"], done["result"]) == ("succeeded", "HI"), server.log()
        assert (tmp_path / "scholarsource-data").is_dir()  # data_dir is relative to it too
    finally:
        server.stop(timeout=15)
