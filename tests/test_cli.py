"""The `scholarsource` command: flags to Config, exit codes, client commands, and one real run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from scholarsource import __version__
from scholarsource.cli import main
from scholarsource.config import Config
from scholarsource.errors import ConfigError, ScholarSourceError
from scholarsource.exitcodes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from tests.conftest import Server
from tests.helpers import wait_until

PLAN_FIELDS = {"workers", "slots", "cores", "memory_total", "memory_available", "slots_by_cpu",
               "slots_by_memory", "reason", "workers_reason", "slots_per_core", "slots_set",
               "memory_per_job"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCHOLARSOURCE_* or STATE_DIRECTORY from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("SCHOLARSOURCE_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def assert_clean_error(result: Result, code: int, text: str) -> None:
    """Exit `code`, one `error:` line naming `text` on stderr, never a traceback."""
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: "), result.output
    assert text in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


# -- commands that build a Config ----------------------------------------------------------------

def test_version() -> None:
    result = invoke("version")
    assert result.exit_code == EXIT_OK
    assert result.stdout.strip() == __version__


def test_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == EXIT_OK
    for command in ("serve", "plan", "check-config", "version", "submit", "status", "cancel",
                    "jobs"):
        assert command in result.stdout


def test_plan_describes_the_sizing() -> None:
    result = invoke("plan", "--slots", "3")
    assert result.exit_code == EXIT_OK, result.output
    assert "API worker(s) (one per core), 3 job slot(s): slots set in the configuration" \
        in result.stdout


def test_plan_tells_io_bound_users_about_slots_per_core(tmp_path: Path) -> None:
    # A machine whose memory cannot be the limit: tiny jobs, no reserve.
    path = tmp_path / "scholarsource.toml"
    path.write_text('memory_per_job = "1MB"\nmemory_reserve = 0\n')
    result = invoke("plan", "--config", str(path))
    assert result.exit_code == EXIT_OK, result.output
    assert "I/O-bound jobs (LLM calls, scraping) mostly wait" in result.stdout
    assert "raise slots_per_core (now 1), e.g. slots_per_core = 4 in the config file or " \
        "SCHOLARSOURCE_SLOTS_PER_CORE=4" in result.stdout


def test_plan_json_has_every_field() -> None:
    result = invoke("plan", "--json", "--workers", "2")
    assert result.exit_code == EXIT_OK, result.output
    plan = json.loads(result.stdout)
    assert set(plan) == PLAN_FIELDS
    assert plan["workers"] == 2
    assert plan["slots"] >= 1
    assert plan["cores"] == len(os.sched_getaffinity(0))


def test_check_config_prints_the_values_with_flags_applied() -> None:
    result = invoke("check-config", "--slots", "3", "--data-dir", "/srv/jobs")
    assert result.exit_code == EXIT_OK, result.output
    values = json.loads(result.stdout)
    sizing = values.pop("sizing")
    cores = len(os.sched_getaffinity(0))
    assert values == {**Config().as_dict(), "slots": 3, "data_dir": "/srv/jobs",
                      "task_modules": [], "builtin_tasks": ["safe"], "allowed_hosts": [],
                      "schedules": [],
                      "workers": cores}
    assert sizing.startswith(f"{cores} API worker(s) (one per core), 3 job slot(s): slots set")


def test_check_config_shows_the_automatic_sizes_in_effect() -> None:
    # workers = 0 and slots = 0 mean "automatic": print what they come to, not 0.
    result = invoke("check-config")
    assert result.exit_code == EXIT_OK, result.output
    values = json.loads(result.stdout)
    cores = len(os.sched_getaffinity(0))
    assert values["workers"] == cores and values["slots"] >= 1
    assert f"{cores} API worker(s) (one per core), {values['slots']} job slot(s): " \
        in values["sizing"]


def test_check_config_layers_file_environment_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "scholarsource.toml"
    path.write_text('slots = 2\nworkers = 2\ndurability = "full"\nmemory_per_job = "1GiB"\n')
    env = {"SCHOLARSOURCE_WORKERS": "4", "SCHOLARSOURCE_TASK_MODULES": "a.b, c.d"}
    result = invoke("check-config", "--config", str(path), "--slots", "6", env=env)
    assert result.exit_code == EXIT_OK, result.output
    values = json.loads(result.stdout)
    assert values["durability"] == "full"           # file
    assert values["memory_per_job"] == 1024**3       # file, size string
    assert values["workers"] == 4                    # environment over file
    assert values["task_modules"] == ["a.b", "c.d"]  # environment list
    assert values["slots"] == 6                      # flag over file


def test_check_config_reads_scholarsource_config(tmp_path: Path) -> None:
    path = tmp_path / "scholarsource.toml"
    path.write_text('log_level = "debug"\n')
    result = invoke("check-config", env={"SCHOLARSOURCE_CONFIG": str(path)})
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["log_level"] == "debug"


@pytest.mark.parametrize("command", ["check-config", "plan", "serve"])
def test_bad_bind_exits_with_the_config_code(command: str) -> None:
    assert_clean_error(invoke(command, "--bind", "nonsense"), EXIT_CONFIG,
                       "bind must be HOST:PORT, not 'nonsense'")


def test_unknown_key_in_config_file_exits_with_the_config_code(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("slotz = 3\n")
    assert_clean_error(invoke("check-config", "--config", str(path)), EXIT_CONFIG,
                       "unknown setting 'slotz'")


@pytest.mark.parametrize(("toml", "message"), [
    ('slots = "four"', "'slots' in {path} must be a whole number, not 'four'"),
    ('task_modules = "myapp.jobs"',
     """'task_modules' in {path} must be a list of strings, like ["myapp.jobs"], not """
     "'myapp.jobs'"),
    ("slot = 4", "unknown setting 'slot' in {path}; did you mean 'slots'?"),
])
def test_config_mistakes_a_new_user_makes(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "scholarsource.toml"
    path.write_text(toml + "\n")
    result = invoke("check-config", "--config", str(path))
    assert_clean_error(result, EXIT_CONFIG, message.format(path=path))
    assert "invalid literal" not in result.stderr


def test_missing_config_file_exits_with_the_config_code(tmp_path: Path) -> None:
    assert_clean_error(invoke("check-config", "--config", str(tmp_path / "nope.toml")),
                       EXIT_CONFIG, "cannot read config file")


def test_bad_environment_exits_with_the_config_code() -> None:
    assert_clean_error(invoke("check-config", env={"SCHOLARSOURCE_DURABILITY": "maybe"}),
                       EXIT_CONFIG, "durability must be one of normal, full")


def test_usage_errors_exit_with_the_config_code() -> None:
    result = invoke("check-config", "--workers", "many")
    assert result.exit_code == EXIT_CONFIG
    assert "Traceback" not in result.output
    result = invoke("submit", "echo", "-p", "no-equals-sign")
    assert result.exit_code == EXIT_CONFIG
    assert "is not key=value" in result.output


def test_submit_has_an_option_for_every_field_the_api_takes() -> None:
    from scholarsource.api.schemas import SUBMIT_FIELDS
    from scholarsource.remote_commands import submit

    options = {p.name for p in submit.params} - {"as_json", "url", "api_key", "wait", "key"}
    assert options == SUBMIT_FIELDS


# -- serve, with the server itself patched out ---------------------------------------------------

@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace scholarsource.server.serve; returns what each call received."""
    import scholarsource.server

    calls: list[Any] = []
    monkeypatch.setattr(scholarsource.server, "serve",
                        lambda config, reload_config: calls.append(config))
    return calls


def test_serve_passes_the_flags_in_the_config(fake_server: list[Any], tmp_path: Path) -> None:
    result = invoke("serve", "--bind", "0.0.0.0:9000", "--data-dir", str(tmp_path),
                    "--workers", "3", "--slots", "5", env={"SCHOLARSOURCE_MAX_ATTEMPTS": "2"})
    assert result.exit_code == EXIT_OK, result.output
    [config] = fake_server
    assert isinstance(config, Config)
    assert (config.bind, config.data_dir, config.workers, config.slots, config.max_attempts) \
        == ("0.0.0.0:9000", str(tmp_path), 3, 5, 2)


def test_serve_without_flags_uses_the_defaults(fake_server: list[Any]) -> None:
    assert invoke("serve").exit_code == EXIT_OK
    assert fake_server == [Config()]


@pytest.mark.parametrize(("error", "code"), [(ConfigError("bad data dir"), EXIT_CONFIG),
                                              (ScholarSourceError("broken"), EXIT_FAILURE)])
def test_serve_turns_errors_into_exit_codes(monkeypatch: pytest.MonkeyPatch,
                                            error: Exception, code: int) -> None:
    import scholarsource.server

    def fail(config: Config, reload_config: Any) -> None:
        raise error

    monkeypatch.setattr(scholarsource.server, "serve", fail)
    assert_clean_error(invoke("serve"), code, str(error))


# -- client commands without a server ------------------------------------------------------------

@pytest.fixture
def dead_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: connecting is refused, reliably."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("args", [["submit", "noop"], ["submit", "sleep", "--wait"],
                                  ["status", "abc"], ["cancel", "abc"], ["jobs"],
                                  ["jobs", "--status", "queued", "--json"]])
def test_client_commands_report_an_unreachable_server(dead_url: str, args: list[str]) -> None:
    assert_clean_error(invoke(*args, "--url", dead_url), EXIT_FAILURE,
                       f"cannot reach {dead_url}")


def test_client_url_from_the_environment(dead_url: str) -> None:
    assert_clean_error(invoke("jobs", env={"SCHOLARSOURCE_URL": dead_url}), EXIT_FAILURE,
                       f"cannot reach {dead_url}")


# -- the real command against a real server ------------------------------------------------------

def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m scholarsource ARGS` as a subprocess, with no SCHOLARSOURCE_* but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    return subprocess.run([sys.executable, "-m", "scholarsource", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**clean, **(env or {})})


@pytest.mark.e2e
def test_cli_against_a_real_server(serve: Callable[..., Server]) -> None:
    # One slot, so a second long job stays queued; a short grace so teardown is quick.
    server = serve(slots=1, workers=1, env={"SCHOLARSOURCE_GRACE_PERIOD": "1"})
    url = server.url
    api = server.client()

    def status_of(job_id: str) -> str:
        return str(api.get(f"/api/jobs/{job_id}").json()["status"])

    # submit --json prints the job as committed.
    done = run_cli("submit", "echo", "-p", "a=1", "-p", "label=hi", "--json", "--url", url)
    assert done.returncode == EXIT_OK, done.stderr
    job = json.loads(done.stdout)
    assert (job["task"], job["params"]) == ("echo", {"a": 1, "label": "hi"})
    echo_id = job["id"]
    wait_until(lambda: status_of(echo_id) == "succeeded", 15, message="echo to succeed")

    # Every submit field the API takes has its option.
    tuned = run_cli("submit", "noop", "--queue", "batch", "--priority", "7", "--max-attempts",
                    "3", "--timeout", "30", "--memory-limit", "512MB", "--backoff-base", "2",
                    "--backoff-max", "20", "--json", "--url", url)
    assert tuned.returncode == EXIT_OK, tuned.stderr
    job = json.loads(tuned.stdout)
    assert {k: job[k] for k in ("queue", "priority", "max_attempts", "timeout", "memory_limit",
                                "backoff_base", "backoff_max")} == {
        "queue": "batch", "priority": 7, "max_attempts": 3, "timeout": 30.0,
        "memory_limit": 512_000_000, "backoff_base": 2.0, "backoff_max": 20.0}
    after = json.loads(run_cli("submit", "noop", "--depends-on", echo_id,
                               "--on-parent-failure", "run", "--json", "--url", url).stdout)
    assert (after["depends_on"], after["on_parent_failure"]) == ([echo_id], "run")
    refused = run_cli("submit", "noop", "--priority", "5000", "--url", url)
    assert refused.returncode == EXIT_FAILURE
    assert refused.stderr.startswith("error: invalid_request")

    # --idempotency-key: the same key twice is the same job.
    keyed = [json.loads(run_cli("submit", "noop", "--idempotency-key", "k-1", "--json",
                                "--url", url).stdout)["id"] for _ in range(2)]
    assert keyed[0] == keyed[1]

    # --cache-ttl: once the first has succeeded, the second submit gets it back;
    # --bypass-cache runs anew; --unique sends unique: true.
    cached = [json.loads(run_cli("submit", "echo", "-p", "c=1", "--cache-ttl", "60", *extra,
                                 "--wait", "--json", "--url", url).stdout)
              for extra in ((), (), ("--bypass-cache",))]
    assert cached[0]["id"] == cached[1]["id"] != cached[2]["id"]
    assert cached[0]["cache_ttl"] == 60 and cached[2]["bypass_cache"] is True
    unique = json.loads(run_cli("submit", "noop", "--unique", "--json", "--url", url).stdout)
    assert unique["unique"] is True

    shown = run_cli("status", echo_id, "--url", url)
    assert shown.returncode == EXIT_OK, shown.stderr
    assert echo_id in shown.stdout and "succeeded" in shown.stdout
    assert 'result: {"a": 1, "label": "hi"}' in shown.stdout

    listed = run_cli("jobs", "--status", "succeeded", env={"SCHOLARSOURCE_URL": url})
    assert listed.returncode == EXIT_OK, listed.stderr
    assert echo_id in listed.stdout

    # --wait exits 1 when the job does not succeed, and shows why.
    failed = run_cli("submit", "fail", "-p", "message=boom", "--wait", "--url", url)
    assert failed.returncode == EXIT_FAILURE
    assert "dead" in failed.stdout and "TaskFailed: boom" in failed.stdout

    missing = run_cli("status", "no-such-job", "--url", url)
    assert missing.returncode == EXIT_FAILURE
    assert missing.stderr.startswith("error: not_found")

    # A long job takes the only slot; the next one waits in the queue and cancels at once.
    running = run_cli("submit", "sleep", "-p", "seconds=60", "--json", "--url", url)
    running_id = json.loads(running.stdout)["id"]
    wait_until(lambda: status_of(running_id) == "running", 15, message="the long job to run")
    queued = run_cli("submit", "sleep", "-p", "seconds=60", "--json", "--url", url)
    queued_id = json.loads(queued.stdout)["id"]
    assert status_of(queued_id) == "queued"

    cancelled = run_cli("cancel", queued_id, "--json", "--url", url)
    assert cancelled.returncode == EXIT_OK, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"

    again = run_cli("cancel", queued_id, "--url", url)  # idempotent
    assert again.returncode == EXIT_OK, again.stderr
    assert "cancelled" in again.stdout
    too_late = run_cli("cancel", echo_id, "--url", url)
    assert too_late.returncode == EXIT_FAILURE
    assert too_late.stderr.startswith("error: already_finished")

    # A running job is asked to stop, and the user is told what happens next; the sleep
    # task honours ctx.cancel_requested.
    asked = run_cli("cancel", running_id, "--url", url)
    assert asked.returncode == EXIT_OK, asked.stderr
    assert asked.stdout.startswith(f"{running_id}  sleep        running    attempts 1")
    assert "cancel requested" in asked.stdout.splitlines()[0]
    assert "the task sees ctx.cancel_requested and should stop" in asked.stdout
    assert "cancel_grace (10 s by default), its process is killed" in asked.stdout
    assert api.get(f"/api/jobs/{running_id}").json()["cancel_requested"] is True
    wait_until(lambda: status_of(running_id) == "cancelled", 15,
               message="the running job to stop")

    everything = httpx.get(f"{url}/api/jobs", params={"status": "cancelled"}).json()
    assert {j["id"] for j in everything["jobs"]} == {running_id, queued_id}
