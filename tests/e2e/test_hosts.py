"""allowed_hosts through a real server: the DNS rebinding reproduction of issue 10 §5."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from scholarsource.exitcodes import EXIT_CONFIG
from scholarsource.launcher import free_port
from tests.conftest import server_env
from tests.e2e.jobs_api import submit, wait_finished, wait_running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def test_a_rebound_name_can_neither_cancel_nor_list_jobs(serve) -> None:
    server = serve(slots=1)
    client = server.client()
    port = server.url.rsplit(":", 1)[1]
    job = submit(client, "sleep", seconds=30)
    wait_running(client, job["id"])
    # evil.example resolves to 127.0.0.1: to the browser this page is same-origin.
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
               "Sec-Fetch-Site": "same-origin"}
    cancel = client.post(f"/api/jobs/{job['id']}/cancel", headers=rebound)
    assert cancel.status_code == 421
    assert cancel.json()["error"] == "host_not_allowed" and cancel.json()["message"]
    assert client.post(f"/api/cancel/{job['id']}", headers=rebound).status_code == 421
    listing = client.get("/api/jobs", headers={"Host": "evil.example"})
    assert (listing.status_code, listing.json()["error"]) == (421, "host_not_allowed")
    assert job["id"] not in listing.text
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "running"
    # The names the machine itself uses still work, with or without the port.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "[::1]",
                 f"LOCALHOST:{port}"):
        assert client.get("/api/jobs", headers={"Host": host}).status_code == 200, host
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 202
    assert wait_finished(client, job["id"])["status"] == "cancelled"
    metrics = client.get("/metrics").text
    assert 'scholarsource_rejected_requests_total{reason="host_not_allowed"} 3.0' in metrics


def ready(client: httpx.Client, host: str) -> bool:
    try:
        return client.get("/api/health", headers={"Host": host}).status_code == 200
    except httpx.TransportError:
        return False


def test_a_public_bind_answers_only_the_names_it_is_given(serve) -> None:
    port = free_port()
    # auth = "none" (which a public bind must ask for by name): Host is what this tests.
    server = serve(slots=1, args=("--bind", f"0.0.0.0:{port}"), wait=False,
                   env={"SCHOLARSOURCE_ALLOWED_HOSTS": "jobs.example.com,api.example.com:443",
                        "SCHOLARSOURCE_AUTH": "none",
                        "SCHOLARSOURCE_ALLOW_UNAUTHENTICATED_REMOTE": "true"})
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    server.clients.append(client)
    wait_until(lambda: ready(client, "jobs.example.com"), 30, message="the server")
    assert client.get("/api/jobs", headers={"Host": "jobs.example.com"}).status_code == 200
    assert client.get("/api/jobs", headers={"Host": "jobs.example.com:8443"}).status_code == 200
    assert client.get("/api/jobs", headers={"Host": "api.example.com:443"}).status_code == 200
    for host in ("api.example.com:80", "evil.example", f"localhost:{port}"):
        assert client.get("/api/jobs", headers={"Host": host}).status_code == 421, host


def test_star_allows_any_host(serve) -> None:
    client = serve(slots=1, env={"SCHOLARSOURCE_ALLOWED_HOSTS": "*"}).client()
    assert client.get("/api/jobs", headers={"Host": "anything.example"}).status_code == 200


def test_a_public_bind_without_allowed_hosts_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scholarsource", "serve", "--bind", f"0.0.0.0:{free_port()}",
         "--data-dir", str(tmp_path / "data")],
        env=server_env(), capture_output=True, timeout=60, text=True)
    assert result.returncode == EXIT_CONFIG
    assert "allowed_hosts must name" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before it touched anything
