"""Quotas through a real server: submits over a tenant's rate or max_queued answer 429 with
Retry-After and RateLimit-* headers and write nothing; the rate holds exactly across API
workers; `scholarsource tenants` changes the limits of a running server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.jobs_api import all_jobs
from tests.e2e.keyring import KEYS, as_key, make_key
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.both_backends]


def config(tmp_path: Path, text: str) -> tuple[str, str]:
    path = tmp_path / "scholarsource.toml"
    path.write_text(text)
    return ("--config", str(path))


def tenants(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scholarsource", "tenants", *args,
                           "--data-dir", str(server.data_dir)],
                          env=server.cli_env(), capture_output=True, text=True, timeout=60)


def test_over_the_rate_a_submit_gets_429_with_headers_and_writes_nothing(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=1, args=config(tmp_path, '[tenants.default]\nrate = "3/m"\n'))
    client = server.client()
    remaining = []
    for _ in range(3):
        accepted = client.post("/api/jobs", json={"task": "noop", "params": {}})
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["RateLimit-Limit"] == "3"
        remaining.append(accepted.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    for path, body in (("/api/jobs", {"task": "noop", "params": {}}),
                       ("/api/submit", {"task": "noop", "params": {}}),
                       ("/api/jobs/batch", {"jobs": [{"task": "noop"}]})):
        refused = client.post(path, json=body)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited"
        assert "over tenant 'default''s rate (3/m)" in refused.json()["message"]
        # A token comes back every 20 s.
        assert 1 <= int(refused.headers["Retry-After"]) <= 20
        assert refused.headers["RateLimit-Limit"] == "3"
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(refused.headers["RateLimit-Reset"]) <= 60
    assert len(all_jobs(client)) == 3


def test_the_rate_is_exact_across_four_api_workers(serve: Callable[..., Server],
                                                   tmp_path: Path) -> None:
    """Eight clients hammer four workers for three seconds: exactly 30 submits get in. (The
    bucket refills continuously: at "30/h" one token in 120 s, none during the test; at
    "30/m" half a token a second would let in a 31st after two seconds, rightly.)"""
    server = serve(slots=1, workers=4,
                   args=config(tmp_path, '[tenants.default]\nrate = "30/h"\n'))
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 3

    def hammer() -> None:
        # A fresh connection per request spreads the requests over the workers.
        with httpx.Client(base_url=server.url, timeout=10,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while time.monotonic() < deadline:
                status = client.post("/api/jobs", json={"task": "noop"}).status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {202, 429}
    assert statuses.count(202) == 30, (statuses.count(202), len(statuses))
    assert len(all_jobs(server.client())) == 30


def test_max_queued_per_tenant_then_server_wide_and_the_cli_changes_them_live(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(slots=1, env={"SCHOLARSOURCE_MAX_QUEUED": "3",
                                 "SCHOLARSOURCE_GRACE_PERIOD": "0"},
                   args=config(tmp_path, "[tenants.default]\nmax_queued = 2\n"))
    client = server.client()
    sleeper = {"task": "sleep", "params": {"seconds": 30}}
    first = [client.post("/api/jobs", json=sleeper).json() for _ in range(2)]
    full = client.post("/api/jobs", json=sleeper)
    assert full.status_code == 429
    assert full.json()["error"] == "quota_exceeded"
    assert "tenant 'default' may have at most 2 jobs not yet finished" in full.json()["message"]
    assert full.headers["Retry-After"] == "5" and full.headers["RateLimit-Limit"] == "2"
    assert len(all_jobs(client)) == 2
    # The store's limit wins over the config: the server-wide cap of 3 is next.
    done = tenants(server, "set", "default", "--max-queued", "10")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: client.post("/api/jobs", json=sleeper).status_code == 202, timeout=1)
    capped = client.post("/api/jobs", json=sleeper)
    assert capped.status_code == 429
    assert "the server takes at most 3 jobs" in capped.json()["message"]
    listed = tenants(server, "list", "--json")
    assert '"not_finished": 3' in listed.stdout and '"max_queued": 10' in listed.stdout
    # A cancelled job frees its place.
    assert client.post(f"/api/jobs/{first[0]['id']}/cancel").status_code in (200, 202)
    wait_until(lambda: client.get(f"/api/jobs/{first[0]['id']}").json()["final"])
    assert client.post("/api/jobs", json=sleeper).status_code == 202


def test_an_unparsable_rate_stops_the_config_and_the_cli(serve: Callable[..., Server],
                                                         tmp_path: Path) -> None:
    bad = serve(slots=1, wait=False, data_dir=tmp_path / "bad",
                args=config(tmp_path, '[tenants.acme]\nrate = "lots"\n'))
    assert bad.proc.wait(timeout=30) == 2
    assert "tenants.acme.rate must be a rate like" in bad.log()
    server = serve(slots=1)
    refused = tenants(server, "set", "acme", "--rate", "ten per minute")
    assert refused.returncode == 2
    assert "'ten per minute' is not a rate like" in refused.stderr
    assert "acme" not in tenants(server, "list").stdout
    assert tenants(server, "set", "acme", "--rate", "10/m").returncode == 0
    assert "acme                     10/m" in tenants(server, "list").stdout


def test_a_keys_own_rate_holds_beside_its_tenants_and_other_keys(
        serve: Callable[..., Server]) -> None:
    """auth = "keys": a key made with `--rate 3/m` gets 429 after its third submit while
    another key of the same tenant still submits; the refusal names the key's bucket."""
    server = serve(slots=1, env=KEYS)
    limited = make_key(server, "acme", rate="3/m")
    other = make_key(server, "acme")
    with as_key(server, limited) as client, as_key(server, other) as neighbour:
        for _ in range(3):
            accepted = client.post("/api/jobs", json={"task": "noop"})
            assert accepted.status_code == 202, accepted.text
        refused = client.post("/api/jobs", json={"task": "noop"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited"
        assert "the API key's rate (3/m)" in refused.json()["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 20
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert limited not in refused.text
        assert neighbour.post("/api/jobs", json={"task": "noop"}).status_code == 202
        assert len(all_jobs(neighbour)) == 4  # three of the limited key's, one of the other's
