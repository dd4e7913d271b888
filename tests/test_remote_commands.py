"""The CLI's remote commands send the API key from --api-key or SCHOLARSOURCE_API_KEY as a
bearer token, and never print it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_FAILURE, EXIT_OK

KEY = "sk-test-4f1c9e0d2b7a"


class Recorder(BaseHTTPRequestHandler):
    """Answers any GET as job j1, or 401 when the bearer token is not KEY; keeps the
    Authorization headers it saw."""

    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        ok = auth == f"Bearer {KEY}"
        body = ({"id": "j1", "task": "echo", "status": "queued", "final": False, "attempts": 0}
                if ok else {"error": "unauthorized", "message": "a valid API key is needed"})
        data = json.dumps(body).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_key_is_sent_as_a_bearer_token_and_never_printed(url: str, how: str) -> None:
    args = ["status", "j1", "--url", url] + (["--api-key", KEY] if how == "flag" else [])
    env = {"SCHOLARSOURCE_API_KEY": KEY} if how == "environment" else {}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == EXIT_OK, result.output
    assert Recorder.seen == [f"Bearer {KEY}"]
    assert result.stdout.startswith("j1") and KEY not in result.output


def test_a_refused_key_is_the_servers_error_without_the_key(url: str) -> None:
    result = CliRunner().invoke(main, ["jobs", "--url", url, "--api-key", "sk-wrong-key"])
    assert result.exit_code == EXIT_FAILURE
    assert result.stderr == "error: unauthorized: a valid API key is needed\n"
    assert "sk-wrong-key" not in result.output


def test_help_never_shows_the_key_from_the_environment() -> None:
    result = CliRunner().invoke(main, ["submit", "--help"], env={"SCHOLARSOURCE_API_KEY": KEY})
    assert "--api-key" in result.stdout and KEY not in result.stdout


def test_a_malformed_key_is_a_clean_error_that_does_not_show_it() -> None:
    result = CliRunner().invoke(main, ["status", "j1"],
                                env={"SCHOLARSOURCE_API_KEY": "sk-bad\nkey-secret"})
    assert result.exit_code == EXIT_FAILURE and "Traceback" not in result.output
    assert result.stderr.startswith("error: api_key must be") and "secret" not in result.output
