"""`scholarsource bench` run for real, briefly: every scenario against a server it starts, an
existing server over --url, a sweep, the baseline and --compare, bad input, and Ctrl-C.
Nothing here asserts on speed; only that every figure is there and every server is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from click.testing import CliRunner

from scholarsource.bench.scenarios import SCENARIOS
from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_FAILURE
from scholarsource.launcher import free_port
from tests.conftest import Server
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

COMMON_FIELDS = {"scenario", "summary", "unit", "throughput_per_s", "seconds", "requests",
                 "latency_ms", "errors", "server"}
HTTP_FIELDS = {"statuses", "timeline", "generator", "operations_per_s", "requests_per_s"}
LATENCY_FIELDS = {"p50", "p90", "p99", "p99_9", "max"}
ROLES = {"master", "api", "pool", "slots"}
ROLE_FIELDS = {"processes", "cpu_s", "cpu_cores", "rss_peak_bytes", "rss_peak_process_bytes"}
JOB_FIELDS = {"count", "statuses", "jobs_per_s", "wait_ms", "run_ms", "slot_usage", "slots"}


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m scholarsource bench ARGS` as a subprocess, its output captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    return subprocess.run([sys.executable, "-m", "scholarsource", "bench", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def session_alive(sid: int) -> list[int]:
    """Pids of live (not zombie) processes in session `sid`."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return alive


def assert_stopped(server: dict[str, Any]) -> None:
    """The server the bench started is gone, its whole session, and its port is free."""
    assert server["master_pid"], server
    assert session_alive(server["master_pid"]) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(server["url"] + "/api/health", timeout=2)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """`bench all` once, small, with --json and --report."""
    out = tmp_path_factory.mktemp("bench")
    run = bench("all", "--jobs", "8", "--clients", "4", "--workers", "1", "--slots", "2",
                "--json", str(out / "all.json"), "--report", str(out / "all.html"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    (out / "stdout.txt").write_text(run.stdout)
    (out / "stderr.txt").write_text(run.stderr)
    return json.loads((out / "all.json").read_text()), out


def test_every_scenario_completes_with_the_documented_fields(
        full_run: tuple[dict[str, Any], Path]) -> None:
    results, _ = full_run
    assert list(results["scenarios"]) == list(SCENARIOS)
    for name, result in results["scenarios"].items():
        assert "failed" not in result, (name, result)
        assert COMMON_FIELDS <= set(result), (name, set(result))
        assert set(result["latency_ms"]) == LATENCY_FIELDS
        assert result["throughput_per_s"] > 0, name
        assert result["errors"] == {}, name
        assert set(result["server"]["roles"]) == ROLES
        for role in result["server"]["roles"].values():
            assert set(role) == ROLE_FIELDS
        assert result["server"]["roles"]["api"]["rss_peak_bytes"] > 0
        # pickup and e2e-scheduled submit one at a time, e2e-fair into the store
        if name not in ("pickup", "e2e-scheduled", "e2e-fair"):
            assert HTTP_FIELDS <= set(result), name
    for name in ("e2e-noop", "e2e-sleep", "e2e-cpu"):
        jobs = results["scenarios"][name]["jobs"]
        assert JOB_FIELDS <= set(jobs)
        assert jobs["count"] == 8 and jobs["statuses"] == {"succeeded": 8}
        assert results["scenarios"][name]["lost"] == 0
    assert 0 < results["scenarios"]["e2e-cpu"]["jobs"]["efficiency"]
    assert results["scenarios"]["pickup"]["pickup_ms"]["p50"] is not None
    queues = results["scenarios"]["e2e-queues"]
    assert queues["jobs"]["statuses"] == {"succeeded": 8} and queues["lost"] == 0
    # 8 jobs in turn over the mix: 2 capped, 2 reserved, 4 shared (one of them rate limited)
    assert {q: v["count"] for q, v in queues["queues"].items()} == {
        "bench-capped": 2, "bench-reserved": 2, "bench-shared": 4}
    assert all(v["wait_ms"]["p99"] is not None for v in queues["queues"].values())
    assert queues["limits"]["capped_most_running"] == 1
    assert queues["limits"]["rate_most_starts_per_window"] == 1
    assert queues["violations"] == []
    scheduled = results["scenarios"]["e2e-scheduled"]
    assert scheduled["jobs"]["statuses"] == {"succeeded": 8} and scheduled["lost"] == 0
    # A job never starts before its run_at, and (idle server) starts within a second of it.
    assert scheduled["early"] == 0 and scheduled["due_before_submitted"] == 0
    assert 0 <= scheduled["lateness_ms"]["p50"] <= scheduled["lateness_ms"]["max"] < 1000
    # Each job took at least its delay (1 s or more) from submit to start.
    assert scheduled["jobs"]["wait_ms"]["p50"] >= 1000
    fair = results["scenarios"]["e2e-fair"]
    # --jobs 8 of the big tenant, then the small tenant's 20: all of those done, none lost.
    assert fair["jobs"]["statuses"] == {"succeeded": 20} and fair["lost"] == 0
    assert fair["fair"]["backlog"] == 8 and fair["fair"]["small_wait_ms"]["p99"] is not None
    assert results["scenarios"]["sse"]["events"] > 0
    assert results["scenarios"]["frontend"]["user_flow_ms"]["p50"] is not None


def test_json_holds_the_machine_and_the_config(full_run: tuple[dict[str, Any], Path]) -> None:
    results, _ = full_run
    assert results["format"] == "scholarsource-bench/1"
    assert {"cores", "usable_cores", "ram_bytes", "python", "sqlite", "packages",
            "date"} <= set(results["machine"])
    assert results["disk"]["fsyncs_per_s"] > 0
    assert results["config"]["spawned"] is True
    assert results["config"]["jobs"] == 8 and results["config"]["clients"] == 4
    assert results["server"]["api_workers"] == 1 and results["server"]["slots"] == 2
    assert results["problems"] == []


def test_the_output_says_what_ran_and_what_each_figure_means(
        full_run: tuple[dict[str, Any], Path]) -> None:
    results, out = full_run
    news, report = (out / "stderr.txt").read_text(), (out / "stdout.txt").read_text()
    # The raw client by default, said in the header of what is printed and in the JSON.
    assert results["config"]["client"] == "raw"
    assert report.startswith("load: 4 clients over 1 generator process(es), raw client: ")
    assert "load: 4 clients" in news
    # Each job scenario's line gives its real count, never a literal N.
    assert "e2e-noop: 8 no-op jobs, submit to all done" in news
    assert results["scenarios"]["e2e-noop"]["summary"].startswith("8 no-op jobs")
    assert "req p50 ms" in report and "job wait p50 ms" in report
    assert "disk: the disk under " in report and "flushes to storage (fsync) per second" \
        in report


def test_the_started_servers_are_stopped(full_run: tuple[dict[str, Any], Path]) -> None:
    assert_stopped(full_run[0]["server"])
    # e2e-queues ran on a server of its own, configured with its queues, sized the same.
    own = full_run[0]["scenarios"]["e2e-queues"]["own_server"]
    assert own["master_pid"] != full_run[0]["server"]["master_pid"]
    assert (own["api_workers"], own["slots"]) == (1, 2)
    assert_stopped(own)


def test_the_html_report_is_self_contained(full_run: tuple[dict[str, Any], Path]) -> None:
    page = (full_run[1] / "all.html").read_text()
    assert page.count("<svg") >= 2
    assert "<script" not in page and "src=" not in page and "href=" not in page


def test_compare_and_baseline(full_run: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    old = full_run[1] / "all.json"
    run = bench("submit", "status", "--baseline", "--duration", "1", "--clients", "4",
                "--workers", "1", "--slots", "1", "--compare", str(old),
                "--json", str(tmp_path / "new.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    new = json.loads((tmp_path / "new.json").read_text())
    ratios = {(r["run"], r["figure"]): r for r in new["compare"]["ratios"]}
    submit = ratios[("submit", "throughput_per_s")]
    assert submit["ratio"] == pytest.approx(submit["new"] / submit["old"], rel=1e-2)
    assert "new/old" in run.stdout
    for name in ("submit", "status"):
        assert "failed" not in new["baseline"][name]
        assert new["vs_baseline"][name]["throughput"] > 0
        assert set(new["baseline"][name]["server"]["roles"]) == {"master", "api"}
    assert_stopped(new["server"])


def test_a_running_server_over_url_in_open_loop(serve: Callable[..., Server],
                                                tmp_path: Path) -> None:
    server = serve(workers=1, slots=1)
    run = bench("submit", "--url", server.url, "--rate", "40", "--duration", "1",
                "--clients", "2", "--json", str(tmp_path / "url.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "url.json").read_text())["scenarios"]["submit"]
    assert result["generator"]["loop"] == "open" and result["generator"]["rate"] == 40
    assert result["requests"] > 0 and result["errors"] == {}
    assert "roles" in result["server"]  # same machine: measured
    assert server.proc.poll() is None  # a server the bench did not start keeps running


def test_sweep_runs_each_value_on_its_own_server(tmp_path: Path) -> None:
    run = bench("submit", "--sweep", "workers=1,2", "--duration", "1", "--clients", "4",
                "--slots", "1", "--json", str(tmp_path / "sweep.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    sweep = json.loads((tmp_path / "sweep.json").read_text())["sweep"]
    assert [r["value"] for r in sweep["runs"]] == [1, 2]
    assert [r["server"]["api_workers"] for r in sweep["runs"]] == [1, 2]
    rows = sweep["scaling"]["submit"]
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] > 0
    assert "scaling of submit" in run.stdout
    for r in sweep["runs"]:
        assert_stopped(r["server"])


def test_scrape_metrics_scrapes_during_each_scenario(tmp_path: Path) -> None:
    run = bench("submit", "--duration", "1.5", "--clients", "4", "--scrape-metrics", "0.2",
                "--json", str(tmp_path / "run.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    scraped = json.loads((tmp_path / "run.json").read_text())["scenarios"]["submit"][
        "metrics_scraped"]
    assert scraped["scrapes"] >= 3 and scraped["failures"] == 0
    assert "/metrics scraped" in run.stdout


def test_sse_holds_streams_open_during_submits_and_each_ends_on_its_final_event(
        tmp_path: Path) -> None:
    run = bench("sse", "--streams", "40", "--duration", "1", "--clients", "4",
                "--json", str(tmp_path / "run.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "run.json").read_text())["scenarios"]["sse"]
    assert "failed" not in result, result
    held = result["held"]
    assert (held["streams"], held["ended_on_final_event"], held["cancel_errors"]) == (40, 40, 0)
    assert held["final_event_delay_ms"]["p99"] is not None and held["event_reads_per_s"] > 0
    assert result["requests"] > 0 and result["errors"] == {}  # the submits under them
    assert "40 streams held open" in run.stdout
    assert_stopped(json.loads((tmp_path / "run.json").read_text())["server"])


def test_a_config_file_sizes_the_started_server(tmp_path: Path) -> None:
    config = tmp_path / "team.toml"
    config.write_text("workers = 1\nslots = 1\nbind = '0.0.0.0:1'\n")
    run = bench("pickup", "--jobs", "3", "--config", str(config), "--json",
                str(tmp_path / "run.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["config"]["config_file"] == str(config)
    # Its sizes apply; its bind does not (the bench picks a free loopback port).
    assert (result["server"]["api_workers"], result["server"]["slots"]) == (1, 1)
    assert result["server"]["url"].startswith("http://127.0.0.1:")
    assert not result["problems"], result["problems"]
    assert_stopped(result["server"])


def test_e2e_queues_adds_its_queues_to_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "team.toml"
    config.write_text("workers = 1\nslots = 3\n[queues.reports]\nmax_running = 2\n")
    run = bench("e2e-queues", "--jobs", "5", "--clients", "2", "--config", str(config),
                "--json", str(tmp_path / "run.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "run.json").read_text())
    # Only its own server ran (no scenario needed the plain one), with the file's sizes.
    assert result["server"]["slots"] == 3 and result["server"]["api_workers"] == 1
    queues = result["scenarios"]["e2e-queues"]
    assert queues["jobs"]["statuses"] == {"succeeded": 5} and queues["violations"] == []
    assert not result["problems"], result["problems"]
    assert "job wait p50 / p99 ms by queue: bench-capped" in run.stdout
    assert_stopped(result["server"])


def test_all_over_url_leaves_out_what_needs_its_own_server(serve: Callable[..., Server],
                                                           tmp_path: Path) -> None:
    server = serve(workers=1, slots=1)
    run = bench("all", "--url", server.url, "--jobs", "2", "--clients", "2",
                "--json", str(tmp_path / "url.json"))
    assert run.returncode == 0, run.stdout + run.stderr
    ran = json.loads((tmp_path / "url.json").read_text())["scenarios"]
    assert list(ran) == [n for n in SCENARIOS if n not in ("e2e-queues", "e2e-fair")]
    assert ran["e2e-scheduled"]["early"] == 0 and ran["e2e-scheduled"]["lost"] == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_bench_stops_its_server(sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOLARSOURCE_")}
    with subprocess.Popen([sys.executable, "-m", "scholarsource", "bench", "submit",
                           "--duration", "60", "--clients", "2"],
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          env=env) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # the scenario's first line: the server is up
                if line.startswith("submit:"):
                    break
            servers = [p for p in psutil.Process(proc.pid).children()
                       if "serve" in p.cmdline()]
            assert len(servers) == 1
            sid = servers[0].pid
            proc.send_signal(sig)
            assert proc.wait(timeout=60) == 130
            assert "interrupted" in proc.stderr.read()
            wait_until(lambda: not session_alive(sid), 10,
                       message="the server's session to end")
        finally:
            proc.kill()


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["bench", *args])


def test_an_unreachable_url_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("submit", "--url", url, "--duration", "1")
    assert result.exit_code == EXIT_FAILURE
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot reach {url}")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "unknown scenario 'nope'"),
    (["submit", "--sweep", "bogus"], "--sweep takes KEY=V1,V2"),
    (["submit", "--sweep", "workers=1,x"], "values must be numbers"),
    (["submit", "--sweep", "slots=1,2", "--url", "http://127.0.0.1:1"], "cannot be used with"),
    (["submit", "--duration", "1", "--jobs", "3"], "alternatives"),
    (["submit", "--workers", "2", "--url", "http://127.0.0.1:1"], "cannot be used with --url"),
    (["submit", "--compare", "/nonexistent/old.json"], "cannot read"),
    (["submit", "--config", "/nonexistent.toml"], "does not exist"),
    (["e2e-queues", "--url", "http://127.0.0.1:1"], "e2e-queues configures queues of its own"),
])
def test_bad_input_is_a_usage_error(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
