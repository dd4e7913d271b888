"""A backup taken from a server under load restores into a server that serves every job."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import server_env
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def _submit_until(url: str, stop: threading.Event, submitted: list[str]) -> None:
    """Submit short jobs as fast as one client can, so that jobs are being queued, claimed
    and finished while the backup runs."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            task = ("noop", "sleep")[len(submitted) % 2]
            body = {"task": task, "params": {"seconds": 0.05} if task == "sleep" else {}}
            response = client.post("/api/jobs", json=body)
            assert response.status_code == 202, response.text
            submitted.append(response.json()["id"])


def test_backup_under_load_passes_integrity_check_and_restores_every_job(
        serve, tmp_path: Path) -> None:
    server = serve(slots=2)
    submitted: list[str] = []
    stop = threading.Event()
    load = threading.Thread(target=_submit_until, args=(server.url, stop, submitted))
    load.start()
    try:
        wait_until(lambda: len(submitted) >= 200, 30, message="200 submitted jobs")
        target = tmp_path / "backup.db"
        taken = subprocess.run(
            [sys.executable, "-m", "scholarsource", "backup", str(target),
             "--data-dir", str(server.data_dir)],
            capture_output=True, text=True, env=server_env(), timeout=60)
        assert taken.returncode == 0, taken.stderr
        assert load.is_alive(), "the load stopped before the backup finished"
    finally:
        stop.set()
        load.join()

    copy = sqlite3.connect(target)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    held = dict(copy.execute("SELECT id, status FROM jobs").fetchall())
    copy.close()
    assert len(held) >= 200
    assert set(held) <= set(submitted)
    assert len(set(held.values()) & {"queued", "running", "succeeded"}) >= 2  # mid-flight

    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(target, restored / "scholarsource.db")  # the README's restore steps
    second = serve(slots=2, data_dir=restored)
    client = second.client()
    for job_id in held:
        response = client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job_id
