"""examples/rag_platform end to end: its config (auth = "keys", tenants acme and globex), its
setup.sh making each user's key with the real CLI, and its web app (app.py, in process)
calling a real serve with each user's key. What a platform of many teams relies on: a user
over its rate, or a tenant over its own, gets a 429 with Retry-After and nothing written;
one tenant never sees another's documents; and a tenant's backlog does not hold another's
work back (fair slots)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from scholarsource import Client
from scholarsource.client import NotFound
from scholarsource.launcher import free_port
from tests.e2e.jobs_api import all_jobs
from tests.examples.conftest import Example, load_module
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "scholarsource"
TEXT = " ".join(f"word{i}" for i in range(200)) + " the nightly index rebuild runs at three"


def setup_users(run: Example, users: Path, rate: str) -> dict[str, str]:
    """Run the example's setup.sh (the real `scholarsource keys create`, once per user)
    writing `users`; each user's key."""
    done = subprocess.run(["sh", "setup.sh"], cwd=run.directory, capture_output=True,
                          text=True, timeout=60,
                          env={**run.env, "SCHOLARSOURCE": str(CLI), "USER_RATE": rate,
                               "RAG_USERS": str(users)})
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "ss_" not in done.stderr  # the keys go to the file only
    entries = json.loads(users.read_text())
    assert {user: entry["tenant"] for user, entry in entries.items()} == \
        {"alice": "acme", "bob": "acme", "carol": "globex"}
    return {user: entry["key"] for user, entry in entries.items()}


@contextmanager
def platform(run: Example, users: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[httpx.Client]:
    """The example's app as its README starts it (from_environment, under uvicorn), in a
    thread on a free port, calling the real server; a client of the app."""
    monkeypatch.setenv("RAG_USERS", str(users))
    monkeypatch.setenv("SCHOLARSOURCE_URL", run.server.url)
    port = free_port()
    app = load_module("rag_platform", "app.py").from_environment()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, message="the app to start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Rag:
    """The example's server, its users' keys (by user), and a client of its app."""

    run: Example
    keys: dict[str, str]
    app: httpx.Client


@pytest.fixture
def rag(example: Callable[..., Example], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Rag]]:
    """Factory: rag("5/m", "--slots", "2") starts the example's server (with the flags),
    runs setup.sh with keys at that rate, and starts the app; all stopped at teardown."""
    with ExitStack() as stack:
        def start(rate: str, *flags: str) -> Rag:
            run = example("rag_platform", *flags)
            users = tmp_path / "users.json"
            keys = setup_users(run, users, rate)
            return Rag(run, keys, stack.enter_context(platform(run, users, monkeypatch)))

        yield start


def api(run: Example, key: str) -> httpx.Client:
    """A client of ScholarSource's own API with `key`."""
    return httpx.Client(base_url=run.server.url, timeout=30,
                        headers={"Authorization": f"Bearer {key}"})


def upload(app: httpx.Client, user: str, title: str, text: str = TEXT) -> httpx.Response:
    return app.post("/documents", json={"title": title, "text": text},
                    headers={"X-User": user})


def wait_final(app: httpx.Client, user: str, path: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        answer: dict[str, Any] = app.get(path, headers={"X-User": user}).json()
        return answer if answer["final"] else None

    return wait_until(final, timeout=20, message=f"{path} to finish")


def tenants_cli(run: Example, *args: str) -> None:
    done = subprocess.run([str(CLI), "tenants", *args, "--config", "scholarsource.toml"],
                          cwd=run.directory, env=run.env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (done.stdout, done.stderr)


@pytest.mark.both_backends
def test_a_user_over_its_key_and_a_tenant_over_its_rate_get_429_and_nothing_is_written(
        rag: Callable[..., Rag]) -> None:
    started = rag("5/m")
    run, keys, app = started.run, started.keys, started.app
    accepted = []
    for i in range(5):
        answer = upload(app, "alice", f"alice-{i}")
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["id"])
    refused = upload(app, "alice", "alice-over")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited"
    assert "API key" in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60  # 5/m: a token every 12 s
    # bob, of the same tenant, has a bucket of his own.
    answer = upload(app, "bob", "bob-0")
    assert answer.status_code == 202, answer.text
    accepted.append(answer.json()["id"])

    # The tenant's own rate holds over every user's key: at most one more token left.
    tenants_cli(run, "set", "acme", "--rate", "1/h")
    answers = [upload(app, "bob", f"bob-{i}") for i in (1, 2)]
    accepted += [a.json()["id"] for a in answers if a.status_code == 202]
    over = answers[-1]
    assert over.status_code == 429, over.text
    assert over.json()["error"] == "rate_limited"
    assert "tenant 'acme'" in over.json()["message"]
    assert int(over.headers["Retry-After"]) > 60  # 1/h: the app did not sit it out
    # The other tenant is untouched.
    assert upload(app, "carol", "carol-0").status_code == 202
    # The app's own bad input: a coded JSON error, and nothing reaches ScholarSource.
    for body, status, code in ((b"{", 400, "invalid_json"),
                               (b"[1]", 422, "invalid_request"),
                               (b'{"title": "t", "text": ""}', 422, "invalid_request"),
                               (b'{"title": 1, "text": "x"}', 422, "invalid_request")):
        bad = app.post("/documents", content=body, headers={"X-User": "bob"})
        assert (bad.status_code, bad.json()["error"]) == (status, code), body
    stranger = upload(app, "mallory", "x")
    assert (stranger.status_code, stranger.json()["error"]) == (401, "unauthorized")

    with Client(run.server.url, keys["bob"]) as bob:
        stored = [job.id for job in bob.jobs()]
    assert sorted(stored) == sorted(accepted)  # the refused ones left no job behind


@pytest.mark.both_backends
def test_a_tenant_sees_only_its_own_documents_through_the_app_and_the_api(
        rag: Callable[..., Rag]) -> None:
    started = rag("60/m")
    run, keys, app = started.run, started.keys, started.app
    document = upload(app, "alice", "handbook").json()["id"]
    ingested = wait_final(app, "alice", f"/documents/{document}")
    assert ingested["status"] == "succeeded", ingested
    assert ingested["result"]["chunks"] == 5 and ingested["progress"] == 1.0
    asked = app.post(f"/documents/{document}/questions", headers={"X-User": "alice"},
                     json={"question": "when does the nightly index rebuild run"})
    assert asked.status_code == 202, asked.text
    answer = wait_final(app, "alice", f"/questions/{asked.json()['id']}")
    assert "nightly index rebuild" in answer["result"]["answer"], answer

    # carol (globex): acme's document does not exist for her, on every app route.
    for response in (app.get(f"/documents/{document}", headers={"X-User": "carol"}),
                     app.post(f"/documents/{document}/questions",
                              headers={"X-User": "carol"}, json={"question": "x"}),
                     app.get(f"/questions/{asked.json()['id']}",
                             headers={"X-User": "carol"})):
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    own = upload(app, "carol", "globex-notes").json()["id"]
    wait_final(app, "carol", f"/documents/{own}")

    # The same through ScholarSource's API with carol's key: the job, the lists, the stats
    # and the event stream.
    with Client(run.server.url, keys["carol"]) as carol:
        for job_id in (document, asked.json()["id"]):
            with pytest.raises(NotFound):
                carol.get(job_id)
            with pytest.raises(NotFound):
                next(iter(carol.events(job_id)))
        assert [job.id for job in carol.jobs()] == [own]
    with api(run, keys["carol"]) as raw:
        assert sum(raw.get("/api/stats").json()["totals"].values()) == 1
        with raw.stream("GET", f"/api/jobs/{document}/events") as stream:
            assert stream.status_code == 404
    # alice's key reads her stream (so the 404s above are carol's, not a broken route).
    with Client(run.server.url, keys["alice"]) as alice:
        assert any(event.final for event in alice.events(document))


@pytest.mark.both_backends
def test_a_tenants_backlog_does_not_hold_another_tenants_documents_back(
        rag: Callable[..., Rag]) -> None:
    # alice's nightly re-index is one batch of 200: her key's rate lets it through.
    started = rag("1000/h", "--slots", "2")
    run, keys, app = started.run, started.keys, started.app
    backlog = [{"task": "ingest_document",
                "params": {"title": f"archive-{i}", "text": TEXT}} for i in range(200)]
    with Client(run.server.url, keys["alice"]) as alice:
        assert len(alice.submit_many(backlog)) == 200
    globex = [upload(app, "carol", f"globex-{i}").json()["id"] for i in range(3)]
    done = [wait_final(app, "carol", f"/documents/{job}") for job in globex]
    with api(run, keys["alice"]) as acme:
        waiting = [job for job in all_jobs(acme) if not job["final"]]
        acme.post("/api/jobs/cancel", json={"all": True})  # so that the server stops now
    assert all(job["status"] == "succeeded" for job in done), done
    # With round-robin among tenants (acme weight 2, globex 1) globex's three documents take
    # a slot within a few claims; first come, first served, they wait for all 200.
    assert len(waiting) >= 100, f"acme's backlog had only {len(waiting)} jobs left"
